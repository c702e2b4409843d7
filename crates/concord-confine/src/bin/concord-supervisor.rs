//! The supervisor on its own (concord runs its own binary in that role: `concord
//! __supervise`); used by this crate's tests.

fn main() {
    concord_confine::supervisor::main()
}
