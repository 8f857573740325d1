//! dmconf: a conformance harness for device-management messaging.
//!
//! A test target hands [`main`] the project root and the reference
//! implementations it may start; every suite under `suites/` then runs
//! against the SUT of the profile `DMCONF_PROFILE` names (or against each
//! reference), one libtest trial per case, with a JSON Lines evidence
//! file. [`Harness`] runs cases one at a time for targets that judge the
//! verdicts themselves (the self-test, the benchmark).
//!
//! # Layout
//! - `suite`: the suite format (typed, located, no I/O), its parser and
//!   its errors; `discover` reads suite files, `schema` the JSON Schemas.
//! - `profile`: the SUT, its capabilities, hooks, timeouts, brokers;
//!   `plan`: the cases to run and why some are ignored.
//! - `run`: the engine. One case at a time: an inbox of what the SUT
//!   sent, one wait loop, one file per step kind. It never names a
//!   protocol.
//! - `protocol`: the seam the engine calls, with `dmf` and `ability`
//!   behind it; `transport` (AMQP on lapin, MQTT on rumqttc) and `broker`
//!   (RabbitMQ, Mosquitto via testcontainers) under them.
//! - `sut`: starting, asking and stopping the SUT: a [`Reference`] in
//!   process, a command, or a server already running; `mgmt` is hawkBit's
//!   Management API.
//! - `event`: what a run reports; `report`: the evidence file, the text
//!   of a failed case, the score, JUnit and HTML, built from events
//!   alone, and [`merge`], which replays several evidence files as one
//!   run.
//! - `session` ([`Harness`]) and `trials` ([`main`]): the run, and the
//!   libtest bridge.
//! - [`kit`]: the building blocks a SUT written in Rust may use (the
//!   references do).

#![warn(missing_docs)]

pub mod baseline;
mod broker;
mod certs;
mod discover;
mod env;
mod error;
pub mod event;
pub mod kit;
mod matching;
mod measure;
mod message;
mod mgmt;
mod plan;
mod profile;
mod protocol;
mod reaper;
mod report;
mod run;
mod schema;
mod secrets;
pub mod select;
mod session;
pub mod suite;
mod sut;
mod transport;
mod trials;
mod vars;

pub use broker::warm::command as brokers;
pub use error::{
    EXIT_BROKEN_SUITE, EXIT_FAILED, EXIT_HARNESS_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED, Error,
};
pub use plan::Planned;
pub use profile::{BrokerSpec, Profile, SutSpec};
pub use report::merge::command as merge;
pub use session::{Harness, Judged};
pub use sut::{BoxFuture, Instance, Reference, References, Setup};
pub use trials::{default_threads, list, main, reaped, root};
