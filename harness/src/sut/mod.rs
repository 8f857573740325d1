//! The system under test, as one case sees it: a reference implementation
//! in process ([`reference`]), a command started for the case (a device)
//! or once for the run (a server, [`server`]), or a server already
//! running. It is started with the case's environment, asked to act
//! through hooks ([`hook`]), the reference's own, or hawkBit's Management
//! API, and stopped at the end of the case.

pub(crate) mod hook;
mod process;
mod ready;
mod reference;
mod server;

pub(crate) use process::Process;
pub(crate) use ready::Unready;
pub use reference::{BoxFuture, Instance, Reference, References, Setup};
pub(crate) use server::Servers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::mgmt::{MgmtClient, MgmtSpec};
use crate::profile::{Hook, SutSpec};
use crate::run::RunEnv;
use crate::vars::Vars;

/// How long a device command may take to print its `ready` text.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How much of a shared server's output a case's report shows.
const SHARED_OUTPUT_SHOWN: usize = 8192;

enum Kind {
    /// A server that was running before the run; nothing to start.
    Running,
    /// A reference in process.
    Reference(Box<dyn Instance>),
    /// A command started for this case.
    Process(Process),
    /// A server command started once for the run.
    Shared(Arc<Process>),
}

/// A running SUT, as one case sees it.
pub(crate) struct SutInstance {
    kind: Kind,
    hooks: BTreeMap<String, Hook>,
    hook_dir: std::path::PathBuf,
    mgmt: Option<MgmtClient>,
    log: Arc<Mutex<String>>,
}

/// How starting a SUT for a case went.
pub(crate) enum Started {
    /// It runs.
    Running(SutInstance),
    /// It did not get ready: the SUT's failure.
    Failed(String),
    /// The harness could not start it.
    Harness(Error),
}

impl SutInstance {
    /// Starts the profile's SUT for one case, with the case's
    /// environment.
    pub(crate) async fn start(env: &RunEnv<'_>, sut_env: &crate::env::SutEnv) -> Started {
        let profile = env.profile;
        let kind = match Self::kind(env, sut_env).await {
            Ok(k) => k,
            Err(s) => return s,
        };
        let mgmt_spec = match &kind {
            Kind::Reference(i) => i.management().map(|url| MgmtSpec {
                url,
                user: "admin".into(),
                password: "admin".into(),
            }),
            _ => profile.mgmt.clone(),
        };
        let mgmt = match mgmt_spec.map(MgmtClient::new).transpose() {
            Ok(m) => m,
            Err(e) => return Started::Harness(Error::Start(e)),
        };
        Started::Running(SutInstance {
            kind,
            hooks: profile.hooks.clone(),
            hook_dir: profile.hook_dir.clone(),
            mgmt,
            log: Arc::default(),
        })
    }

    async fn kind(env: &RunEnv<'_>, sut_env: &crate::env::SutEnv) -> Result<Kind, Started> {
        let profile = env.profile;
        Ok(match (&profile.sut, env.shared_sut.clone()) {
            (SutSpec::Running, _) => Kind::Running,
            (SutSpec::Command(_), Some(process)) => Kind::Shared(process),
            (SutSpec::Command(spec), None) => {
                let process =
                    Process::spawn(spec, sut_env).map_err(|e| Started::Harness(Error::Start(e)))?;
                let sign = match &spec.ready {
                    Some(text) => ready::Sign::Text(text),
                    None => ready::Sign::Started,
                };
                let within = profile.timeouts.scaled(READY_WITHIN);
                if let Err(why) = ready::wait(&process, sign, within).await {
                    process.stop().await;
                    return Err(match why {
                        ready::Unready::Sut(s) => Started::Failed(s),
                        ready::Unready::Harness(e) => Started::Harness(e),
                    });
                }
                Kind::Process(process)
            }
            (SutSpec::Reference { fault, variant }, _) => {
                let Some(r) = env.references.find(profile.protocol, profile.role) else {
                    return Err(Started::Harness(Error::Start(format!(
                        "no reference {} {} is built in",
                        profile.protocol,
                        profile.role.as_str()
                    ))));
                };
                let setup = Setup {
                    env: sut_env
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect(),
                    fault: fault.clone(),
                    variant: variant.clone(),
                };
                let instance = r
                    .start(setup)
                    .await
                    .map_err(|e| Started::Harness(Error::Start(format!("{}: {e}", r.name()))))?;
                Kind::Reference(instance)
            }
        })
    }

    /// A SUT with nothing to start and no hooks, for the engine's tests.
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        SutInstance {
            kind: Kind::Running,
            hooks: BTreeMap::new(),
            hook_dir: std::path::PathBuf::from("."),
            mgmt: None,
            log: Arc::default(),
        }
    }

    /// Asks the SUT to perform `name` with `args`, and returns its JSON
    /// answer (`null` when it gives none). A command hook of the profile
    /// comes first; then the reference's own hooks; then the Management
    /// API.
    pub(crate) async fn call(
        &mut self,
        name: &str,
        args: &Map<String, Value>,
        vars: &Vars,
    ) -> Result<Value, String> {
        if let Some(hook) = self.hooks.get(name).filter(|h| !h.command.is_empty()) {
            let mut vars = vars.clone();
            for (k, v) in args {
                vars.set(k, v.clone());
            }
            let all = serde_json::to_string(args).unwrap_or_default();
            vars.set("args", Value::String(all));
            return hook::run_hook(name, hook, &vars, &self.hook_dir, &self.log).await;
        }
        if let Kind::Reference(instance) = &self.kind
            && self.hooks.contains_key(name)
        {
            return instance.call(name, args).await;
        }
        match &self.mgmt {
            Some(m) => m.call(name, args).await,
            None => Err(format!("the profile offers no hook `{name}`")),
        }
    }

    /// If the SUT has already ended on its own, how.
    pub(crate) async fn exited(&self) -> Option<String> {
        match &self.kind {
            Kind::Running => None,
            Kind::Reference(i) => i.exited(),
            Kind::Process(p) => p.exited().await,
            Kind::Shared(p) => p.exited().await,
        }
    }

    /// Stops the SUT (a shared server goes on); returns its output and
    /// the hooks'.
    pub(crate) async fn stop(self) -> String {
        let mut output = match self.kind {
            Kind::Running => String::new(),
            Kind::Reference(i) => {
                i.stop().await;
                String::new()
            }
            Kind::Process(p) => p.stop().await,
            Kind::Shared(p) => {
                // The run's server: the end of its output so far.
                let out = p.output();
                out[out.floor_char_boundary(out.len().saturating_sub(SHARED_OUTPUT_SHOWN))..]
                    .to_owned()
            }
        };
        output.push_str(&self.log.lock().map(|l| l.clone()).unwrap_or_default());
        output
    }
}
