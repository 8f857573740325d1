//! The main job: every suite under `suites/` against the SUT of the
//! profile named by `DMCONF_PROFILE`, or the built-in reference device.

fn main() -> std::process::ExitCode {
    dmconf_harness::trials::conformance_main(env!("CARGO_MANIFEST_DIR"))
}
