//! dmconf: a conformance harness for device-management messaging.
//!
//! A suite file is parsed into typed data that touches no I/O
//! ([`suite`]); [`plan`] lists its cases for a profile; [`run`] plays the
//! opposite role of the system under test over a real broker
//! ([`broker`], [`transport`], [`protocol`]) and yields a verdict per
//! case; [`report`] and [`trials`] turn verdicts into libtest results and
//! evidence files.
//!
//! # Layout
//! - [`suite`]: the suite format, its parser and its errors.
//! - [`schema`]: JSON Schemas from `schemas/`.
//! - [`discover`]: reading suite files from disk.
//! - [`profile`]: the SUT, its capabilities, hooks, timeouts, brokers.
//! - [`plan`]: cases to run, and why some are ignored.
//! - [`message`], [`matching`], [`vars`]: messages, patterns, variables.
//! - [`transport`]: AMQP on lapin, MQTT on rumqttc.
//! - [`protocol`]: hawkBit DMF, and the ABB Ability Device API v2 over
//!   IoT Hub's MQTT conventions.
//! - [`broker`]: RabbitMQ and Mosquitto via testcontainers, or given
//!   brokers.
//! - [`sut`]: starting and stopping the system under test, and asking it
//!   to act (hooks, [`mgmt`]).
//! - [`reference`]: reference implementations with fault catalogues.
//! - [`run`]: the engine, and the named checks.
//! - [`event`], [`report`]: run events and what reads them.
//! - [`trials`]: the libtest bridge and the main functions.

#![warn(missing_docs)]

pub mod broker;
pub mod discover;
pub mod event;
pub mod matching;
pub mod message;
pub mod mgmt;
pub mod plan;
pub mod profile;
pub mod protocol;
pub mod reaper;
pub mod reference;
pub mod report;
pub mod run;
pub mod schema;
pub mod suite;
pub mod sut;
pub mod transport;
pub mod trials;
pub mod vars;
