//! The main job: every suite under `suites/` against the SUT of the
//! profile named by `DMCONF_PROFILE`, or against each built-in reference.

fn main() -> std::process::ExitCode {
    dmconf_harness::main(dmconf_reference::all())
}
