//! The reference DMF device: correct by default, and able to carry one
//! realistic mistake at a time ([`DeviceFault`]) so that the self-test can
//! prove that each case fails when it should.
//!
//! It behaves as the DMF API asks of a device: it declares its own reply
//! exchange and queue before registering, registers with THING_CREATED,
//! reports each action's progress (RUNNING, DOWNLOAD, DOWNLOADED, then
//! FINISHED), answers every CANCEL_DOWNLOAD with CANCELED or
//! CANCEL_REJECTED, installs an action once however often it is sent, and
//! ignores what it does not know.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::message::Message;
use crate::protocol::dmf::DMF_EXCHANGE;
use crate::transport::amqp::{AmqpClient, QueueSpec};

/// A realistic mistake the reference device can be started with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceFault {
    /// Registers without the `reply_to` property.
    NoReplyTo,
    /// Names a reply exchange in `reply_to` that it never declared.
    NoReplyExchange,
    /// Registers without the `tenant` header.
    NoTenantHeader,
    /// Answers CANCEL_DOWNLOAD with FINISHED, as hawkBit's device
    /// simulator does.
    CancelAnsweredFinished,
    /// Never answers a CANCEL_DOWNLOAD.
    CancelSilent,
    /// Answers a cancel with another action's id.
    CancelWrongActionId,
    /// Answers a cancel twice.
    CancelAnsweredTwice,
    /// Answers CANCELED, then lets the installation finish anyway.
    FinishedAfterCanceled,
    /// Rejects a cancel, then never completes the action.
    RejectedNeverFinishes,
    /// Does not answer a cancel for an action it does not know.
    IgnoresUnknownCancel,
    /// Puts the thing id in the `tenant` header of status updates (the
    /// hawkBit SDK's cancel bug).
    StatusTenantIsThingId,
    /// Reports `DONE` instead of FINISHED.
    BadStatusValue,
    /// Reports every status with the action id plus one.
    StatusWrongActionId,
    /// Stops reporting after DOWNLOADED.
    NoFinalStatus,
    /// Sends status updates without `content_type`.
    StatusWithoutContentType,
    /// Installs again when the same DOWNLOAD_AND_INSTALL comes again.
    DoubleInstall,
    /// Treats DOWNLOAD (download only) as DOWNLOAD_AND_INSTALL.
    DownloadInstalls,
    /// Drops requests whose JSON has fields it does not know.
    StrictJson,
    /// Hangs on a message with an unknown topic: stays connected and
    /// serves nothing more.
    CrashOnUnknownTopic,
    /// Does not answer REQUEST_ATTRIBUTES_UPDATE.
    IgnoresAttributeRequest,
    /// Sends UPDATE_ATTRIBUTES without the `thingId` header.
    AttributesWithoutThingId,
}

impl DeviceFault {
    /// Every fault, in catalogue order.
    pub const ALL: [DeviceFault; 21] = [
        DeviceFault::NoReplyTo,
        DeviceFault::NoReplyExchange,
        DeviceFault::NoTenantHeader,
        DeviceFault::CancelAnsweredFinished,
        DeviceFault::CancelSilent,
        DeviceFault::CancelWrongActionId,
        DeviceFault::CancelAnsweredTwice,
        DeviceFault::FinishedAfterCanceled,
        DeviceFault::RejectedNeverFinishes,
        DeviceFault::IgnoresUnknownCancel,
        DeviceFault::StatusTenantIsThingId,
        DeviceFault::BadStatusValue,
        DeviceFault::StatusWrongActionId,
        DeviceFault::NoFinalStatus,
        DeviceFault::StatusWithoutContentType,
        DeviceFault::DoubleInstall,
        DeviceFault::DownloadInstalls,
        DeviceFault::StrictJson,
        DeviceFault::CrashOnUnknownTopic,
        DeviceFault::IgnoresAttributeRequest,
        DeviceFault::AttributesWithoutThingId,
    ];

    /// The fault's name in profiles and the fault table.
    pub fn name(self) -> &'static str {
        match self {
            DeviceFault::NoReplyTo => "no-reply-to",
            DeviceFault::NoReplyExchange => "no-reply-exchange",
            DeviceFault::NoTenantHeader => "no-tenant-header",
            DeviceFault::CancelAnsweredFinished => "cancel-answered-finished",
            DeviceFault::CancelSilent => "cancel-silent",
            DeviceFault::CancelWrongActionId => "cancel-wrong-action-id",
            DeviceFault::CancelAnsweredTwice => "cancel-answered-twice",
            DeviceFault::FinishedAfterCanceled => "finished-after-canceled",
            DeviceFault::RejectedNeverFinishes => "rejected-never-finishes",
            DeviceFault::IgnoresUnknownCancel => "ignores-unknown-cancel",
            DeviceFault::StatusTenantIsThingId => "status-tenant-is-thing-id",
            DeviceFault::BadStatusValue => "bad-status-value",
            DeviceFault::StatusWrongActionId => "status-wrong-action-id",
            DeviceFault::NoFinalStatus => "no-final-status",
            DeviceFault::StatusWithoutContentType => "status-without-content-type",
            DeviceFault::DoubleInstall => "double-install",
            DeviceFault::DownloadInstalls => "download-installs",
            DeviceFault::StrictJson => "strict-json",
            DeviceFault::CrashOnUnknownTopic => "crash-on-unknown-topic",
            DeviceFault::IgnoresAttributeRequest => "ignores-attribute-request",
            DeviceFault::AttributesWithoutThingId => "attributes-without-thing-id",
        }
    }

    /// Looks a fault up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// How the reference device is started.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Broker URL.
    pub amqp_url: String,
    /// Tenant header value.
    pub tenant: String,
    /// Thing id.
    pub thing_id: String,
    /// The mistake to make, if any.
    pub fault: Option<DeviceFault>,
}

/// Phase of an installation, as its last reported status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    Downloading,
    Downloaded,
    Done,
}

/// Pauses between the statuses of an action, long enough for a cancel to
/// arrive while downloading, and again while installing.
const STEP: Duration = Duration::from_millis(300);

struct Action {
    phase: watch::Receiver<Phase>,
    cancel: watch::Sender<bool>,
}

struct Device {
    cfg: DeviceConfig,
    client: AmqpClient,
    reply_to: String,
    actions: Mutex<HashMap<i64, Action>>,
}

/// A running reference device.
pub struct DeviceHandle {
    task: JoinHandle<()>,
    device: Arc<Device>,
}

impl DeviceHandle {
    /// Sends THING_CREATED again, as a device does after a restart or on
    /// its poll interval.
    pub async fn reregister(&self) -> Result<(), String> {
        self.device.register().await
    }

    /// Stops the device and closes its connection.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        self.device.client.close().await;
    }

    /// Whether the device's message loop has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Starts a reference device: it connects, declares its reply exchange and
/// queue, registers, and then serves requests until stopped.
pub async fn start(cfg: DeviceConfig) -> Result<DeviceHandle, String> {
    let client = AmqpClient::connect(&cfg.amqp_url).await?;
    let reply_to = format!("dmconf.device.{}", cfg.thing_id);
    let mut inbox = None;
    if cfg.fault != Some(DeviceFault::NoReplyExchange) {
        client.declare_fanout(&reply_to, false, true).await?;
        let queue = client
            .declare_queue(
                "",
                &QueueSpec {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
            )
            .await?;
        client.bind(&queue, &reply_to).await?;
        inbox = Some(client.consume(&queue).await?);
    }
    let device = Arc::new(Device {
        cfg,
        client,
        reply_to,
        actions: Mutex::new(HashMap::new()),
    });
    device.register().await?;
    let d = device.clone();
    let task = tokio::spawn(async move {
        let Some(mut inbox) = inbox else {
            return std::future::pending().await;
        };
        while let Some(msg) = inbox.recv().await {
            if !d.clone().handle(msg).await {
                break;
            }
        }
    });
    Ok(DeviceHandle { task, device })
}

impl Device {
    fn has(&self, f: DeviceFault) -> bool {
        self.cfg.fault == Some(f)
    }

    async fn register(&self) -> Result<(), String> {
        let mut headers = json!({"type": "THING_CREATED", "thingId": self.cfg.thing_id});
        if !self.has(DeviceFault::NoTenantHeader) {
            headers["tenant"] = json!(self.cfg.tenant);
        }
        let mut props = json!({});
        if !self.has(DeviceFault::NoReplyTo) {
            props["reply_to"] = json!(self.reply_to);
        }
        self.send(headers, props, Vec::new()).await
    }

    async fn send(&self, headers: Value, properties: Value, body: Vec<u8>) -> Result<(), String> {
        let msg = Message {
            channel: DMF_EXCHANGE.to_owned(),
            headers: serde_json::from_value(headers).unwrap_or_default(),
            properties: serde_json::from_value(properties).unwrap_or_default(),
            body,
            raw: false,
        };
        self.client.publish(&msg).await
    }

    async fn status(&self, action_id: i64, status: &str, text: &str) {
        let id = if self.has(DeviceFault::StatusWrongActionId) {
            action_id + 1
        } else {
            action_id
        };
        let status = if self.has(DeviceFault::BadStatusValue) && status == "FINISHED" {
            "DONE"
        } else {
            status
        };
        let body = json!({"actionId": id, "actionStatus": status, "message": [text]});
        self.event_status(body).await;
    }

    async fn event_status(&self, body: Value) {
        let headers = json!({
            "type": "EVENT",
            "topic": "UPDATE_ACTION_STATUS",
            "tenant": self.cfg.tenant,
            "thingId": self.cfg.thing_id,
        });
        let props = if self.has(DeviceFault::StatusWithoutContentType) {
            json!({})
        } else {
            json!({"content_type": "application/json"})
        };
        let _ = self
            .send(headers, props, body.to_string().into_bytes())
            .await;
    }

    /// Handles one message; `false` ends the device's message loop.
    async fn handle(self: Arc<Self>, msg: Message) -> bool {
        let topic = msg.header("topic");
        match (msg.header("type").as_deref(), topic.as_deref()) {
            (Some("EVENT"), Some("DOWNLOAD_AND_INSTALL")) => self.on_deployment(&msg, false).await,
            (Some("EVENT"), Some("DOWNLOAD")) => self.on_deployment(&msg, true).await,
            (Some("EVENT"), Some("CANCEL_DOWNLOAD")) => self.on_cancel(&msg).await,
            (Some("EVENT"), Some("REQUEST_ATTRIBUTES_UPDATE")) => self.on_attribute_request().await,
            (Some("THING_DELETED"), _) => return false,
            _ => {
                if self.has(DeviceFault::CrashOnUnknownTopic) {
                    // Hung, not gone: its queue and exchange stay, so the
                    // case sees a device that stops answering.
                    std::future::pending::<()>().await;
                }
            }
        }
        true
    }

    fn action_id(&self, msg: &Message, known: &[&str]) -> Option<i64> {
        let body = msg.body_json()?;
        if self.has(DeviceFault::StrictJson) && !strict_ok(&body, known) {
            return None;
        }
        body.get("actionId")?.as_i64()
    }

    async fn on_deployment(self: Arc<Self>, msg: &Message, download_only: bool) {
        let Some(id) = self.action_id(msg, &["actionId", "targetSecurityToken", "softwareModules"])
        else {
            return;
        };
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        {
            let mut actions = self.actions.lock().await;
            if actions.contains_key(&id) && !self.has(DeviceFault::DoubleInstall) {
                return;
            }
            actions.insert(
                id,
                Action {
                    phase: phase_rx,
                    cancel: cancel_tx,
                },
            );
        }
        let install = !download_only || self.has(DeviceFault::DownloadInstalls);
        tokio::spawn(async move { self.run_action(id, install, phase_tx, cancel_rx).await });
    }

    async fn run_action(
        &self,
        id: i64,
        install: bool,
        phase: watch::Sender<Phase>,
        mut cancel: watch::Receiver<bool>,
    ) {
        let canceled = |c: &watch::Receiver<bool>| {
            *c.borrow() && !self.has(DeviceFault::FinishedAfterCanceled)
        };
        self.status(id, "RUNNING", "Update started").await;
        let _ = tokio::time::timeout(STEP / 6, cancel.changed()).await;
        if canceled(&cancel) {
            return;
        }
        let _ = phase.send(Phase::Downloading);
        self.status(id, "DOWNLOAD", "Downloading artifacts").await;
        let _ = tokio::time::timeout(STEP, cancel.changed()).await;
        if canceled(&cancel) {
            return;
        }
        let _ = phase.send(Phase::Downloaded);
        self.status(id, "DOWNLOADED", "Artifacts downloaded").await;
        if !install || self.has(DeviceFault::NoFinalStatus) {
            let _ = phase.send(Phase::Done);
            return;
        }
        tokio::time::sleep(STEP).await;
        if self.has(DeviceFault::RejectedNeverFinishes) && *cancel.borrow() {
            return;
        }
        let _ = phase.send(Phase::Done);
        self.status(id, "FINISHED", "Update installed").await;
    }

    async fn on_cancel(&self, msg: &Message) {
        let Some(id) = self.action_id(msg, &["actionId"]) else {
            return;
        };
        if self.has(DeviceFault::CancelSilent) {
            if let Some(a) = self.actions.lock().await.get(&id) {
                let _ = a.cancel.send(true);
            }
            return;
        }
        let answer = {
            let actions = self.actions.lock().await;
            match actions.get(&id) {
                None => {
                    if self.has(DeviceFault::IgnoresUnknownCancel) {
                        return;
                    }
                    "CANCELED"
                }
                Some(a) => {
                    let phase = *a.phase.borrow();
                    if phase < Phase::Downloaded {
                        let _ = a.cancel.send(true);
                        "CANCELED"
                    } else if phase == Phase::Downloaded {
                        // Installing: too late to stop safely.
                        let _ = a.cancel.send(true);
                        "CANCEL_REJECTED"
                    } else {
                        "CANCEL_REJECTED"
                    }
                }
            }
        };
        let (answer, text) = match answer {
            "CANCELED" if self.has(DeviceFault::CancelAnsweredFinished) => {
                ("FINISHED", "Simulation canceled")
            }
            "CANCELED" => ("CANCELED", "The update was canceled."),
            _ => (
                "CANCEL_REJECTED",
                "The update is being installed and cannot be canceled.",
            ),
        };
        let answer_id = if self.has(DeviceFault::CancelWrongActionId) {
            id + 1
        } else {
            id
        };
        let body = json!({"actionId": answer_id, "actionStatus": answer, "message": [text]});
        let times = if self.has(DeviceFault::CancelAnsweredTwice) {
            2
        } else {
            1
        };
        for _ in 0..times {
            if self.has(DeviceFault::StatusTenantIsThingId) {
                let headers = json!({
                    "type": "EVENT", "topic": "UPDATE_ACTION_STATUS",
                    "tenant": self.cfg.thing_id, "thingId": self.cfg.thing_id,
                });
                let props = json!({"content_type": "application/json"});
                let _ = self
                    .send(headers, props, body.to_string().into_bytes())
                    .await;
            } else {
                self.event_status(body.clone()).await;
            }
        }
    }

    async fn on_attribute_request(&self) {
        if self.has(DeviceFault::IgnoresAttributeRequest) {
            return;
        }
        let mut headers =
            json!({"type": "EVENT", "topic": "UPDATE_ATTRIBUTES", "tenant": self.cfg.tenant});
        if !self.has(DeviceFault::AttributesWithoutThingId) {
            headers["thingId"] = json!(self.cfg.thing_id);
        }
        let body = json!({
            "attributes": {"hwRevision": "1.1", "serial": self.cfg.thing_id, "fwVersion": "1.0.0"},
            "mode": "MERGE",
        });
        let props = json!({"content_type": "application/json"});
        let _ = self
            .send(headers, props, body.to_string().into_bytes())
            .await;
    }
}

/// Whether every field of a request, at every level, is one the strict
/// parser knows.
fn strict_ok(body: &Value, top: &[&str]) -> bool {
    const NESTED: [&str; 12] = [
        "moduleId",
        "moduleType",
        "moduleVersion",
        "artifacts",
        "metadata",
        "filename",
        "urls",
        "hashes",
        "size",
        "key",
        "value",
        "encrypted",
    ];
    fn walk(v: &Value, allowed: &dyn Fn(&str) -> bool) -> bool {
        match v {
            Value::Object(m) => m
                .iter()
                .all(|(k, v)| allowed(k) && walk_inner(k, v, allowed)),
            Value::Array(a) => a.iter().all(|v| walk(v, allowed)),
            _ => true,
        }
    }
    fn walk_inner(k: &str, v: &Value, allowed: &dyn Fn(&str) -> bool) -> bool {
        // Hash and URL maps have free keys.
        if k == "urls" || k == "hashes" {
            true
        } else {
            walk(v, allowed)
        }
    }
    let allowed = |k: &str| top.contains(&k) || NESTED.contains(&k);
    walk(body, &allowed)
}
