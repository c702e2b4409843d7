//! The `concord` command.

fn main() -> std::process::ExitCode {
    concord_server::cli::main()
}
