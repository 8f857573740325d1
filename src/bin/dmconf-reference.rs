//! Runs a reference implementation on its own, as a server a profile can
//! name as a command; see `dmconf_reference::cli`.

fn main() -> std::process::ExitCode {
    dmconf_reference::cli::main()
}
