//! The engine: runs one case against the SUT and yields its verdict,
//! emitting events as it goes ([`crate::event`]); it never prints and
//! never names a protocol. [`case`] runs a case from start to verdict;
//! [`cx`] is a running case's state and [`failure`] what a step's failure carries; [`inbox`] holds what the SUT sent;
//! [`wait`] is the one wait loop; [`step`] has one file per step kind.

mod case;
mod cx;
mod failure;
mod inbox;
mod step;
#[cfg(test)]
mod tests;
mod wait;

pub(crate) use case::{requirements, run_case, unready};
pub(crate) use inbox::{Cursor, Inbox, Item, Offer, Scope, Watch};

use std::sync::Arc;

use crate::profile::Profile;
use crate::protocol::Sides;
use crate::schema::SchemaStore;
use crate::sut::{Process, References};

/// What every case of a run shares.
pub(crate) struct RunEnv<'a> {
    /// Compiled schemas.
    pub schemas: &'a SchemaStore,
    /// The profile.
    pub profile: &'a Profile,
    /// The brokers and the sides the harness plays on them.
    pub sides: &'a Sides,
    /// The reference implementations the run may start.
    pub references: &'a References,
    /// A server command that runs for the whole run, if there is one.
    pub shared_sut: Option<Arc<Process>>,
}
