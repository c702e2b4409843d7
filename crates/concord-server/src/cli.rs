//! The command line: `concord [serve]`, `concord user …`, `concord token …`,
//! `concord policy …`.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use concord_authz::{Action, Identity, User};
use concord_identity::{NewPassword, UserStore};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{ServeOptions, Settings};

/// Concord: a Jupyter Server with authorization built in.
#[derive(Parser, Debug)]
#[command(name = "concord", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeOptions,
}

// The serve options are the big variant; the enum is parsed once, so size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Start the server (the default).
    Serve(ServeOptions),
    /// Manage named users (for `--auth users`).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage users' API tokens: create (scoped, expiring), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check and explain policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// Where the users database is: the same state directory the server uses.
#[derive(Args, Debug, Clone)]
struct StateArgs {
    /// The server's state directory (default as for `concord serve`).
    #[arg(long, env = "CONCORD_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// A config file naming the state directory.
    #[arg(long, env = "CONCORD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add a user; the password is asked for (or read from standard input).
    Add {
        /// The login name.
        username: String,
        /// Groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// A full name to show.
        #[arg(long)]
        name: Option<String>,
        /// Store this existing hash (e.g. jupyter_server's `argon2:…`) instead of asking.
        #[arg(long)]
        password_hash: Option<String>,
        /// No password: the user can only use API tokens.
        #[arg(long, conflicts_with = "password_hash")]
        no_password: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Change a user's password (logs them out everywhere).
    Passwd {
        /// The login name.
        username: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Set a user's groups (comma-separated; empty for none).
    Groups {
        /// The login name.
        username: String,
        /// The new groups.
        #[arg(value_delimiter = ',')]
        groups: Vec<String>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Create an API token for a user; it is printed once.
    Token {
        /// The login name.
        username: String,
        /// What the token is for.
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List users and their groups.
    List {
        #[command(flatten)]
        state: StateArgs,
    },
    /// Remove a user (their sessions and tokens end).
    Remove {
        /// The login name.
        username: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create an API token for a user; the secret is printed once.
    Create {
        /// The token's owner.
        username: String,
        /// Limit the token to a grant such as `contents:read:/projects/a/**` (repeat for
        /// more); without any, the token has all of its owner's rights.
        #[arg(long = "scope")]
        scope: Vec<String>,
        /// When it stops working, from now: `3600`, `90s`, `45m`, `12h`, `30d`, `2w`.
        #[arg(long, value_parser = parse_expires_in)]
        expires_in: Option<chrono::TimeDelta>,
        /// What the token is for.
        #[arg(long, default_value = "")]
        note: String,
        /// Print the new token's id, scope and expiry as JSON (with the secret).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List API tokens (never their secrets): a user's, or everybody's.
    List {
        /// Whose tokens (default: everybody's).
        username: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Revoke an API token by its id; it stops working at once, also in a running server.
    Revoke {
        /// The token's id (as listed).
        id: i64,
        /// Only if it belongs to this user.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// `--expires-in`: seconds, or a number with a unit (s, m, h, d, w).
fn parse_expires_in(text: &str) -> Result<chrono::TimeDelta, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number of seconds or e.g. 12h, 30d"))?;
    let seconds_per = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => return Err(format!("unknown unit {other:?} (use s, m, h, d or w)")),
    };
    number
        .checked_mul(seconds_per)
        .filter(|&s| s > 0)
        .and_then(chrono::TimeDelta::try_seconds)
        .ok_or_else(|| format!("{text:?}: must be more than 0 and not absurdly large"))
}

/// Which policy a `policy` command looks at.
#[derive(Args, Debug, Clone)]
struct PolicyArgs {
    /// A policy file (TOML).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// A built-in preset (default: owner-only, unless --policy is given).
    #[arg(long)]
    preset: Option<String>,
    /// Extra raw Cedar policies.
    #[arg(long)]
    cedar_policy: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Decide one request and print allow or deny with the deciding rule.
    Check {
        /// The user asking.
        #[arg(long)]
        user: String,
        /// The user's groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// read, write or execute.
        #[arg(long)]
        action: Action,
        /// e.g. `contents:/projects/a/x.ipynb`, `kernels`, `kernels:ID@owner`.
        #[arg(long)]
        resource: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Check a policy file without starting a server.
    Validate {
        /// The policy file (TOML).
        file: PathBuf,
        /// Raw Cedar policies to check with it.
        #[arg(long)]
        cedar_policy: Option<PathBuf>,
    },
    /// Print a policy as the Cedar it compiles to.
    Show {
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

/// Run the command line; the exit code is 0 on success, 1 on failure, 2 for a deny.
pub fn main() -> ExitCode {
    // The supervisor of a kernel or terminal: concord runs itself in that role. It must
    // start before anything else (single-threaded, no runtime), and is not a command users
    // type.
    if std::env::args_os().nth(1).as_deref()
        == Some(concord_confine::supervisor::SUPERVISOR_ARG.as_ref())
    {
        concord_confine::supervisor::main();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(options)) => serve(options),
        Some(Command::User(cmd)) => user(cmd).map(|()| ExitCode::SUCCESS),
        Some(Command::Token(cmd)) => token(cmd).map(|()| ExitCode::SUCCESS),
        Some(Command::Policy(cmd)) => policy(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("concord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(options: ServeOptions) -> anyhow::Result<ExitCode> {
    let allocator_configured = crate::memory::configure();
    let settings = Settings::resolve(options)?;
    init_logging(&settings.log_level);
    if !allocator_configured {
        tracing::warn!("the allocator refused a setting; memory is returned less eagerly");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(crate::serve::run(settings))?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{level},hyper=warn,tower=warn,notify=warn"
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: in a log file or a pipe they are noise.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn open_store(state: &StateArgs) -> anyhow::Result<UserStore> {
    let dir = crate::config::state_dir(state.state_dir.clone(), state.config.as_deref())?;
    crate::serve::private_dir(&dir)?;
    UserStore::open(&dir).context("cannot open the users database")
}

/// Ask for a password twice without echo, or read one line from a non-terminal stdin.
fn read_new_password() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    let first = rpassword::prompt_password("New password: ")?;
    let second = rpassword::prompt_password("Repeat it: ")?;
    if first != second {
        bail!("the two passwords differ");
    }
    Ok(first)
}

fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            username,
            groups,
            name,
            password_hash,
            no_password,
            state,
        } => {
            let store = open_store(&state)?;
            let plain;
            let password = if no_password {
                NewPassword::None
            } else if let Some(hash) = &password_hash {
                NewPassword::Hash(hash)
            } else {
                plain = read_new_password()?;
                NewPassword::Plain(&plain)
            };
            store.add_user(&username, password, &groups)?;
            if let Some(name) = name {
                let update = concord_identity::ProfileUpdate {
                    name: Some(Some(name.clone())),
                    display_name: Some(Some(name)),
                    ..Default::default()
                };
                store.update_profile(&username, &update)?;
            }
            println!("added user {username}");
        }
        UserCommand::Passwd { username, state } => {
            let store = open_store(&state)?;
            let password = read_new_password()?;
            store.set_password(&username, NewPassword::Plain(&password))?;
            println!("password of {username} changed; their sessions have ended");
        }
        UserCommand::Groups {
            username,
            groups,
            state,
        } => {
            let store = open_store(&state)?;
            let groups: Vec<String> = groups.into_iter().filter(|g| !g.is_empty()).collect();
            store.set_groups(&username, &groups)?;
            println!("groups of {username}: {}", groups.join(", "));
        }
        UserCommand::Token {
            username,
            note,
            state,
        } => {
            let store = open_store(&state)?;
            let token = store.create_token(&username, &note)?;
            println!("{}", token.token);
            eprintln!("(shown once: keep it somewhere safe)");
        }
        UserCommand::List { state } => {
            let store = open_store(&state)?;
            let mut out = std::io::stdout().lock();
            for record in store.list_users()? {
                writeln!(
                    out,
                    "{}\t{}\t{}",
                    record.user.username,
                    record.groups.join(","),
                    record.user.display_name
                )?;
            }
        }
        UserCommand::Remove { username, state } => {
            let store = open_store(&state)?;
            store.remove_user(&username)?;
            println!("removed user {username}");
        }
    }
    Ok(())
}

fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    use concord_identity::TokenSpec;
    match cmd {
        TokenCommand::Create {
            username,
            scope,
            expires_in,
            note,
            json,
            state,
        } => {
            let scope = if scope.is_empty() {
                None
            } else {
                Some(
                    concord_authz::TokenScope::parse(&scope)
                        .map_err(|e| anyhow::anyhow!("invalid --scope: {e}"))?,
                )
            };
            let expires = expires_in
                .map(|after| {
                    chrono::Utc::now()
                        .checked_add_signed(after)
                        .context("--expires-in is too far in the future")
                })
                .transpose()?;
            let store = open_store(&state)?;
            let created = store.create_token_with(
                &username,
                &TokenSpec {
                    note,
                    scope,
                    expires,
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                println!("{}", created.token);
                eprintln!(
                    "token {} for {username}{}{} (shown once: keep it somewhere safe)",
                    created.id,
                    created
                        .scope
                        .as_ref()
                        .map(|s| format!(", limited to {}", s.join(", ")))
                        .unwrap_or_default(),
                    created
                        .expires
                        .as_ref()
                        .map(|at| format!(", expires {at}"))
                        .unwrap_or_default(),
                );
            }
        }
        TokenCommand::List {
            username,
            json,
            state,
        } => {
            let store = open_store(&state)?;
            let tokens = match &username {
                Some(name) => store.list_tokens(name)?,
                None => store.list_all_tokens()?,
            };
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&tokens)?)?;
                return Ok(());
            }
            writeln!(out, "id\tuser\tcreated\texpires\tlast used\tscope\tnote")?;
            for t in tokens {
                let expires = match (&t.expires, t.expired) {
                    (Some(at), true) => format!("{at} (expired)"),
                    (Some(at), false) => at.clone(),
                    (None, _) => "never".to_string(),
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.username,
                    t.created,
                    expires,
                    t.last_used.as_deref().unwrap_or("never"),
                    t.scope
                        .map(|s| s.join(" "))
                        .unwrap_or_else(|| "(all of the owner's rights)".to_string()),
                    t.note
                )?;
            }
        }
        TokenCommand::Revoke { id, user, state } => {
            let store = open_store(&state)?;
            let owner = match user {
                Some(name) => {
                    store.revoke_token(&name, id)?;
                    name
                }
                None => store.revoke_token_by_id(id)?,
            };
            println!("revoked token {id} of {owner}");
        }
    }
    Ok(())
}

fn policy(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    use crate::policy::PolicyHandle;
    match cmd {
        PolicyCommand::Check {
            user,
            groups,
            action,
            resource,
            policy,
        } => {
            let handle = PolicyHandle::load_from(
                policy.preset.as_deref(),
                policy.policy.as_deref(),
                policy.cedar_policy.as_deref(),
            )
            .map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?;
            let resource = concord_authz::Resource::parse_spec(&resource)
                .map_err(|e| anyhow::anyhow!("invalid --resource: {e}"))?;
            let who = Identity {
                user: User::named(&user),
                groups,
            };
            let decision = handle.authorizer().authorize(&who, action, &resource);
            println!(
                "{}: {}",
                if decision.allowed { "allow" } else { "deny" },
                decision.rule
            );
            crate::services::confine::print_check(&handle.engine(), &who);
            Ok(if decision.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        PolicyCommand::Validate { file, cedar_policy } => {
            match PolicyHandle::load_from(None, Some(&file), cedar_policy.as_deref()) {
                Ok(handle) => {
                    println!("{} is valid: {}", file.display(), handle.describe());
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in errors {
                        eprintln!("{e}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        PolicyCommand::Show { policy } => {
            let handle = PolicyHandle::load_from(
                policy.preset.as_deref(),
                policy.policy.as_deref(),
                policy.cedar_policy.as_deref(),
            )
            .map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?;
            print!("{}", handle.cedar_text());
            Ok(ExitCode::SUCCESS)
        }
    }
}
