//! `dmconf`: the conformance run without a Rust toolchain on the machine
//! that runs it. The same trials and libtest command line as
//! `cargo test --test conformance`, and `dmconf list [--json]`, which
//! prints every case with its requirements and whether it applies to the
//! profile's SUT, and `dmconf merge`, which makes one bundle of the
//! evidence of a run's parts (nextest's processes or partitions), and
//! `dmconf brokers stop`, which removes the brokers kept warm by
//! `DMCONF_REUSE=1`. Suites, schemas and fixtures come from
//! `DMCONF_ROOT`, the working folder, or the folder of the executable or
//! one above it.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("list") => dmconf_harness::list(dmconf_reference::all(), args.any(|a| a == "--json")),
        Some("merge") => dmconf_harness::merge(args),
        Some("brokers") => dmconf_harness::brokers(args),
        _ => dmconf_harness::main(dmconf_reference::all()),
    }
}
