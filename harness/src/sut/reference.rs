//! Systems under test that run inside the test process: the project's
//! reference implementations. They live in a crate of their own, which
//! the test targets hand to the harness as a list of [`Reference`]s; the
//! harness knows them only through this trait, and starts one, for a
//! case, with the same environment a command would get.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::profile::{Profile, SutSpec};
use crate::suite::{Protocol, Role};

/// A future that can be sent between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An implementation of one role of one protocol that the harness can
/// start in process, correct or with one of its faults.
pub trait Reference: Send + Sync {
    /// The protocol it speaks.
    fn protocol(&self) -> Protocol;
    /// The role it plays.
    fn role(&self) -> Role;
    /// Its name in reports.
    fn name(&self) -> &'static str;
    /// The faults it can carry, each a realistic mistake, by name.
    fn faults(&self) -> &'static [&'static str];
    /// Legal behaviours it can show that a real implementation might
    /// (sending of its own accord, polling), by name.
    fn variants(&self) -> &'static [&'static str] {
        &[]
    }
    /// The capabilities it declares.
    fn capabilities(&self) -> &'static [&'static str] {
        &[]
    }
    /// The hooks it serves itself.
    fn hooks(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether it serves hawkBit's Management API (see
    /// [`Instance::management`]).
    fn serves_management(&self) -> bool {
        false
    }
    /// Starts an instance for one case.
    fn start(&self, setup: Setup) -> BoxFuture<'static, Result<Box<dyn Instance>, String>>;
}

/// How an instance is started: what a command SUT would find in its
/// environment, and the fault or variant to show.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// The `DMCONF_*` variables of the case.
    pub env: BTreeMap<String, String>,
    /// The fault to carry, by name.
    pub fault: Option<String>,
    /// The variant to show, by name.
    pub variant: Option<String>,
}

impl Setup {
    /// A variable of the environment, or why it is missing.
    pub fn var(&self, name: &str) -> Result<&str, String> {
        self.env
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("{name} is not set"))
    }
}

/// A running instance.
pub trait Instance: Send + Sync {
    /// Serves one of its hooks.
    fn call<'a>(
        &'a self,
        hook: &'a str,
        args: &'a Map<String, Value>,
    ) -> BoxFuture<'a, Result<Value, String>>;
    /// The base URL of the Management API it serves, if it serves one.
    fn management(&self) -> Option<String> {
        None
    }
    /// How it ended, if it has ended on its own.
    fn exited(&self) -> Option<String>;
    /// Stops it.
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// The references a run may start.
#[derive(Clone, Default)]
pub struct References(Vec<Arc<dyn Reference>>);

impl References {
    /// These references.
    pub fn new(list: Vec<Arc<dyn Reference>>) -> Self {
        References(list)
    }

    /// The reference of a protocol and role.
    pub(crate) fn find(&self, protocol: Protocol, role: Role) -> Option<&Arc<dyn Reference>> {
        self.0
            .iter()
            .find(|r| r.protocol() == protocol && r.role() == role)
    }

    /// Every reference.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<dyn Reference>> {
        self.0.iter()
    }

    /// Whether the profile's SUT runs for each case alone, on broker
    /// objects of its own: a reference server, so that the faulty
    /// servers of a self-test do not serve each other's cases.
    pub(crate) fn isolates(&self, profile: &Profile) -> bool {
        profile.role == Role::Server && matches!(profile.sut, SutSpec::Reference { .. })
    }

    /// Completes a profile that names a reference: its capabilities and
    /// hooks; `Err` when there is no such reference, fault or variant.
    pub(crate) fn resolve(&self, profile: &mut Profile) -> Result<(), Error> {
        let SutSpec::Reference { fault, variant } = &profile.sut else {
            return Ok(());
        };
        let wrong = |message: String| Error::Profile {
            origin: profile.origin.clone(),
            message,
        };
        let r = self.find(profile.protocol, profile.role).ok_or_else(|| {
            wrong(format!(
                "no reference {} {} is built in",
                profile.protocol,
                profile.role.as_str()
            ))
        })?;
        for (what, name, known) in [
            ("fault", fault, r.faults()),
            ("variant", variant, r.variants()),
        ] {
            if let Some(n) = name
                && !known.contains(&n.as_str())
            {
                return Err(wrong(format!(
                    "the {} has no {what} `{n}`; known: {}",
                    r.name(),
                    known.join(", ")
                )));
            }
        }
        let capabilities = r.capabilities().iter().map(|c| c.to_string());
        let hooks = r.hooks().iter().map(|h| h.to_string());
        let serves = r.serves_management();
        let name = match (fault, variant) {
            (Some(f), _) => format!("{} with fault `{f}`", r.name()),
            (None, Some(v)) => format!("{} ({v})", r.name()),
            (None, None) => r.name().to_owned(),
        };
        for c in capabilities {
            if !profile.capabilities.contains(&c) {
                profile.capabilities.push(c);
            }
        }
        for h in hooks {
            profile.hooks.entry(h).or_default();
        }
        profile.builtin_mgmt = serves;
        if profile.origin.is_empty() {
            profile.origin = name;
        }
        Ok(())
    }
}
