//! The reference platform for the Device API v2: the platform's Device
//! Configuration Service behind IoT Hub, correct by default, answering
//! each request with the acks its `ack` header asks for and the
//! request-response notifications of model.query, passing `context` and
//! `correlationId` through, enforcing the 32 kB header limit and the
//! 64 kB cloud-to-device limit, honouring gzip and deflate; and able to
//! carry one realistic mistake at a time ([`CloudFault`]).
//!
//! It logs in as the platform's service identity and serves the devices
//! its configuration names (every device, when it names none).

mod state;

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::task::JoinHandle;

use crate::Fault;
use dmconf_harness::kit::ability::{self, Limits};
use dmconf_harness::kit::{self, Endpoint, Login, MqttClient};
use dmconf_harness::suite::{Protocol, Role};
use dmconf_harness::{BoxFuture, Instance, Setup};
use state::State;

crate::fault_catalogue! {
    /// A realistic mistake the reference platform can be started with.
    pub enum CloudFault {
        /// Leaves `context` out of acknowledgements.
        DropsContextFromAcks = "drops-context-from-acks",
        /// Leaves `context` out of model.query's notifications.
        DropsContextFromNotifications = "drops-context-from-notifications",
        /// Writes spaces in `context` as `+`, as form encoding does.
        ReencodesContext = "reencodes-context",
        /// Gives a batch entry's notifications no context of the entry's own.
        LosesEntryContext = "loses-entry-context",
        /// Does not apply a batch's e_context to its entries.
        IgnoresElevatedContext = "ignores-elevated-context",
        /// Answers a repeated identity.create with a negative ack.
        DifferentResultOnRepeat = "different-result-on-repeat",
        /// Stores a repeated model.create that names its objectId as a second model.
        DuplicateModelOnRepeat = "duplicate-model-on-repeat",
        /// Takes header properties of 32 kB + 1.
        AcceptsOversizedHeaders = "accepts-oversized-headers",
        /// Refuses headers over the limit with the wrong code and details.
        WrongHeaderLimitError = "wrong-header-limit-error",
        /// Sends a notification over the cloud-to-device limit.
        SendsOversizedC2d = "sends-oversized-c2d",
        /// Sends every ack, whatever the `ack` header asks for.
        AcksRegardlessOfLevel = "acks-regardless-of-level",
        /// Takes a request without an `ack` header as ack=all.
        MissingAckMeansAll = "missing-ack-means-all",
        /// Leaves `correlationId` out of its answers.
        DropsCorrelationId = "drops-correlation-id",
        /// Generates no correlationId for a request that has none.
        NoGeneratedCorrelationId = "no-generated-correlation-id",
        /// Reads a compressed body as if it were plain.
        IgnoresContentEncoding = "ignores-content-encoding",
        /// Answers a body that does not decompress with a validation error.
        WrongDecompressionError = "wrong-decompression-error",
        /// Drops a request without msgType or action, unanswered.
        DropsIncompleteRequests = "drops-incomplete-requests",
        /// Drops a message whose msgType it does not know, unanswered.
        DropsUnknownMsgType = "drops-unknown-msg-type",
        /// Takes a request of any version, or none, as version 2.
        IgnoresVersion = "ignores-version",
        /// Answers an action it does not know with success.
        UnknownActionOk = "unknown-action-ok",
        /// Sends no ack for a request whose ack level it does not know.
        DropsInvalidAck = "drops-invalid-ack",
        /// Takes any timeout.
        IgnoresTimeout = "ignores-timeout",
        /// Takes any content type.
        IgnoresContentType = "ignores-content-type",
        /// Answers a body that is not JSON with internal_platform_error.
        NonJsonInternalError = "non-json-internal-error",
        /// Implements only identity, model.create, model.query and batch:
        /// every other action is operation_not_supported.
        MissingActions = "missing-actions",
        /// Acks model.update but keeps the model as it was.
        UpdateNotStored = "update-not-stored",
        /// Takes model.patch as model.update: what it does not name is lost.
        PatchReplaces = "patch-replaces",
        /// Acks model.delete but keeps the model.
        DeleteNotApplied = "delete-not-applied",
        /// Takes owner.remove of any number of models.
        OwnerRemoveTakesMany = "owner-remove-takes-many",
        /// Sends no Reference.Updated notification in a model.query.
        ReferencesNotQueried = "references-not-queried",
        /// Refuses a repeated reference.create ("exists") or reference.delete ("not found").
        ReferenceRepeatFails = "reference-repeat-fails",
        /// Acks extension.create but stores nothing.
        ExtensionNotStored = "extension-not-stored",
        /// Serves extension.get whatever its ack level.
        ExtensionGetAnyAck = "extension-get-any-ack",
        /// Answers a model.create with an ObjectModelCreated notification
        /// too, as ABB's Edge pages show.
        NotifiesModelCreate = "notifies-model-create",
        /// Drops a request whose correlationId it has already seen.
        DedupsByCorrelationId = "dedups-by-correlation-id",
        /// Finishes a request however long it takes, whatever its timeout.
        TimeoutNotEnforced = "timeout-not-enforced",
        /// Leaves a model.query result over the limit out, and acks success.
        DropsOversizedAnswer = "drops-oversized-answer",
        /// Goes on after a failed entry even with failOnError.
        BatchIgnoresFailOnError = "batch-ignores-fail-on-error",
        /// Stops a batch at its first failed entry even without failOnError.
        BatchStopsOnError = "batch-stops-on-error",
        /// Runs an entry even when an entry it depends on failed.
        BatchIgnoresDependsOn = "batch-ignores-depends-on",
    }
}

/// What the reference platform offers beyond the seed: the `slow` hook,
/// and response_too_large for an answer over the cloud-to-device limit.
pub const CAPABILITIES: [&str; 2] = ["ability.timeout", "ability.response-too-large"];

/// The hooks the reference platform serves: `slow` (`{"seconds": N}`)
/// makes each later request take N seconds.
pub const HOOKS: [&str; 1] = ["slow"];

/// The reference platform, as the harness starts it: one per case,
/// serving that case's device.
pub struct Reference;

impl dmconf_harness::Reference for Reference {
    fn protocol(&self) -> Protocol {
        Protocol::Ability
    }
    fn role(&self) -> Role {
        Role::Server
    }
    fn name(&self) -> &'static str {
        "reference Device API platform"
    }
    fn faults(&self) -> &'static [&'static str] {
        CloudFault::NAMES
    }
    fn capabilities(&self) -> &'static [&'static str] {
        &CAPABILITIES
    }
    fn hooks(&self) -> &'static [&'static str] {
        &HOOKS
    }
    fn start(&self, setup: Setup) -> BoxFuture<'static, Result<Box<dyn Instance>, String>> {
        Box::pin(async move {
            let ca = setup
                .var(kit::MQTT_CA)
                .ok()
                .map(|f| std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}")))
                .transpose()?;
            let serves = match setup.var(kit::DEVICE_ID) {
                Ok(id) => Serves::Device(id.to_owned()),
                Err(_) => Serves::Prefix(String::new()),
            };
            let cfg = CloudConfig {
                service: Endpoint::parse(setup.var(kit::MQTT_URL)?, ca)?,
                serves,
                limits: Limits::default(),
                fault: CloudFault::named(setup.fault.as_deref())?,
            };
            Ok(Box::new(start(cfg).await?) as Box<dyn Instance>)
        })
    }
}

impl Instance for CloudHandle {
    fn call<'a>(
        &'a self,
        hook: &'a str,
        args: &'a serde_json::Map<String, Value>,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            if hook != "slow" {
                return Err(format!("the reference platform has no hook `{hook}`"));
            }
            let seconds = args
                .get("seconds")
                .and_then(Value::as_u64)
                .ok_or("slow needs `seconds`, a whole number")?;
            self.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_slow(seconds);
            Ok(serde_json::json!({"slow": seconds}))
        })
    }
    fn exited(&self) -> Option<String> {
        self.task
            .is_finished()
            .then(|| "the reference platform stopped".to_owned())
    }
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { (*self).stop().await })
    }
}

/// How the reference platform is started.
#[derive(Clone, Debug)]
pub struct CloudConfig {
    /// The service identity's endpoint.
    pub service: Endpoint,
    /// The devices it serves.
    pub serves: Serves,
    /// The limits it enforces.
    pub limits: Limits,
    /// The mistake to make, if any.
    pub fault: Option<CloudFault>,
}

/// Which devices a platform serves.
#[derive(Clone, Debug)]
pub enum Serves {
    /// This one (a platform per case).
    Device(String),
    /// Every device whose id starts with this (`""`: every device).
    Prefix(String),
}

/// A running reference platform.
pub struct CloudHandle {
    task: JoinHandle<()>,
    client: Arc<tokio::sync::Mutex<MqttClient>>,
    state: Arc<Mutex<State>>,
}

/// Connects as the service identity, subscribes and serves.
pub async fn start(cfg: CloudConfig) -> Result<CloudHandle, String> {
    let login = Login {
        client_id: format!("dmconf-platform-{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    };
    let (mut client, mut inbox) = MqttClient::connect(&cfg.service, &login).await?;
    let filter = match &cfg.serves {
        Serves::Device(id) => id.as_str(),
        Serves::Prefix(_) => "+",
    };
    client
        .subscribe(&format!("{}#", ability::events_topic(filter)))
        .await?;
    let prefix = match cfg.serves {
        Serves::Device(_) => String::new(),
        Serves::Prefix(p) => p,
    };
    let client = Arc::new(tokio::sync::Mutex::new(client));
    let state = Arc::new(Mutex::new(State::new(cfg.fault, cfg.limits)));
    let c = client.clone();
    let s = state.clone();
    let fault = cfg.fault;
    let task = tokio::spawn(async move {
        while let Some(m) = inbox.recv().await {
            let Some((device, _, _)) = ability::split_topic(&m.topic) else {
                continue;
            };
            if !device.starts_with(&prefix) {
                continue;
            }
            let device = device.to_owned();
            let mut d = ability::from_wire(&m.topic, &m.payload);
            if fault == Some(CloudFault::IgnoresContentEncoding) {
                d.message.body = m.payload.clone();
                d.problem = None;
            }
            let out = s.lock().unwrap_or_else(|e| e.into_inner()).handle(
                &device,
                &d.message,
                d.problem.as_deref(),
            );
            let mut client = c.lock().await;
            for reply in out {
                let (topic, payload) = ability::to_wire(&reply);
                let _ = client.publish(&topic, payload).await;
            }
        }
    });
    Ok(CloudHandle {
        task,
        client,
        state,
    })
}

impl CloudHandle {
    /// Stops the platform.
    pub async fn stop(self) {
        self.task.abort();
        if let Ok(c) = Arc::try_unwrap(self.client) {
            c.into_inner().close().await;
        }
    }
}
