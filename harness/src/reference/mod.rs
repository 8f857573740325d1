//! Reference implementations that the harness ships: correct by default,
//! each with a catalogue of faults. They are the built-in SUT and the
//! subject of the self-test.

pub mod dmf_device;
