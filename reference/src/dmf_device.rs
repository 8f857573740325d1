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
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use dmconf_harness::kit::dmf::DMF_EXCHANGE;
use dmconf_harness::kit::{self, AmqpClient, Message, QueueSpec};
use dmconf_harness::suite::{Protocol, Role};
use dmconf_harness::{BoxFuture, Instance, Setup};

use crate::Fault;
use crate::download;

crate::fault_catalogue! {
    /// A realistic mistake the reference device can be started with.
    pub enum DeviceFault {
        /// Acts on every entry of a batch, as if each were its own.
        BatchActsForAll = "batch-acts-for-all",
        /// Downloads over HTTPS from a server whose certificate no trusted
        /// CA signed.
        AcceptsAnyCertificate = "accepts-any-certificate",
        /// Ignores BATCH_DOWNLOAD_AND_INSTALL and BATCH_DOWNLOAD.
        IgnoresBatch = "ignores-batch",
        /// Registers without the `reply_to` property.
        NoReplyTo = "no-reply-to",
        /// Names a reply exchange in `reply_to` that it never declared.
        NoReplyExchange = "no-reply-exchange",
        /// Registers without the `tenant` header.
        NoTenantHeader = "no-tenant-header",
        /// Answers CANCEL_DOWNLOAD with FINISHED, as hawkBit's device
        /// simulator does.
        CancelAnsweredFinished = "cancel-answered-finished",
        /// Never answers a CANCEL_DOWNLOAD.
        CancelSilent = "cancel-silent",
        /// Answers a cancel with another action's id.
        CancelWrongActionId = "cancel-wrong-action-id",
        /// Answers a cancel twice.
        CancelAnsweredTwice = "cancel-answered-twice",
        /// Answers CANCELED, then lets the installation finish anyway.
        FinishedAfterCanceled = "finished-after-canceled",
        /// Rejects a cancel, then never completes the action.
        RejectedNeverFinishes = "rejected-never-finishes",
        /// Does not answer a cancel for an action it does not know.
        IgnoresUnknownCancel = "ignores-unknown-cancel",
        /// Puts the thing id in the `tenant` header of status updates (the
        /// hawkBit SDK's cancel bug).
        StatusTenantIsThingId = "status-tenant-is-thing-id",
        /// Reports `DONE` instead of FINISHED.
        BadStatusValue = "bad-status-value",
        /// Reports every status with the action id plus one.
        StatusWrongActionId = "status-wrong-action-id",
        /// Stops reporting after DOWNLOADED.
        NoFinalStatus = "no-final-status",
        /// Sends status updates without `content_type`.
        StatusWithoutContentType = "status-without-content-type",
        /// Reports the action installed without fetching its artifacts.
        FinishesWithoutDownload = "finishes-without-download",
        /// Fetches its artifacts, and installs them whatever their hashes.
        IgnoresHashes = "ignores-hashes",
        /// Fetches its artifacts without the security token.
        DownloadsWithoutToken = "downloads-without-token",
        /// Takes CONFIRM for DOWNLOAD_AND_INSTALL: installs at once, and
        /// never answers CONFIRMED.
        ConfirmInstalls = "confirm-installs",
        /// Never answers a CONFIRM.
        IgnoresConfirm = "ignores-confirm",
        /// Resets itself when told the thing was deleted, and registers it
        /// again two seconds later.
        ReregistersAfterDeleted = "reregisters-after-deleted",
        /// Installs again when the same DOWNLOAD_AND_INSTALL comes again.
        DoubleInstall = "double-install",
        /// Installs again, at once and beside the first installation, when
        /// the same DOWNLOAD_AND_INSTALL comes again while it runs.
        InstallsTwiceAtOnce = "installs-twice-at-once",
        /// Treats DOWNLOAD (download only) as DOWNLOAD_AND_INSTALL.
        DownloadInstalls = "download-installs",
        /// De-duplicates by actionId across topics: the DOWNLOAD_AND_INSTALL
        /// that follows a DOWNLOAD of the same action (a maintenance window
        /// that opens) is dropped, and the action never installs.
        WindowNeverInstalls = "window-never-installs",
        /// Answers CANCELED to a cancel of an action it has finished.
        CancelsFinished = "cancels-finished",
        /// Drops requests whose JSON has fields it does not know.
        StrictJson = "strict-json",
        /// Hangs on a message with an unknown topic: stays connected and
        /// serves nothing more.
        CrashOnUnknownTopic = "crash-on-unknown-topic",
        /// Does not answer REQUEST_ATTRIBUTES_UPDATE; reports its
        /// attributes once of its own, 1 s after it registers (hawkBit's
        /// device simulator does 2 s after it starts).
        IgnoresAttributeRequest = "ignores-attribute-request",
        /// Sends UPDATE_ATTRIBUTES without the `thingId` header.
        AttributesWithoutThingId = "attributes-without-thing-id",
        /// Registers with a 50 MB body.
        HugeRegistration = "huge-registration",
        /// Reports statuses whose body nests 10,000 levels deep.
        DeeplyNestedStatus = "deeply-nested-status",
        /// Exits at once, before it registers.
        ExitsAtOnce = "exits-at-once",
        /// Connects, and never registers.
        NeverRegisters = "never-registers",
        /// Sends attribute updates as fast as it can, for ever, and never
        /// registers.
        FloodsInsteadOfRegistering = "floods-instead-of-registering",
    }
}

/// Legal behaviours of real devices that the reference device can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Polls with THING_CREATED every 2 s, reports its attributes unasked
    /// every 1.5 s and PINGs every 2.5 s.
    PollsAndReports,
    /// Sends 50,000 attribute updates as fast as it can, then registers
    /// and serves.
    Floods,
}

impl Variant {
    /// Every variant's name.
    pub const NAMES: &'static [&'static str] = &["polls-and-reports", "floods"];

    fn named(name: Option<&str>) -> Result<Option<Self>, String> {
        Ok(match name {
            None => None,
            Some("polls-and-reports") => Some(Variant::PollsAndReports),
            Some("floods") => Some(Variant::Floods),
            Some(other) => return Err(format!("unknown variant `{other}`")),
        })
    }
}

/// How many attribute updates the `floods` variant sends.
pub const FLOOD: usize = 50_000;

/// The reference DMF device, as the harness starts it.
pub struct Reference;

impl dmconf_harness::Reference for Reference {
    fn protocol(&self) -> Protocol {
        Protocol::Dmf
    }
    fn role(&self) -> Role {
        Role::Device
    }
    fn name(&self) -> &'static str {
        "reference DMF device"
    }
    fn faults(&self) -> &'static [&'static str] {
        DeviceFault::NAMES
    }
    fn variants(&self) -> &'static [&'static str] {
        Variant::NAMES
    }
    fn capabilities(&self) -> &'static [&'static str] {
        &[
            "dmf.batch",
            "dmf.confirmation",
            "dmf.download",
            "dmf.download-https",
            "dmf.download-only",
            "dmf.request-attributes",
            "dmf.reregister",
        ]
    }
    fn hooks(&self) -> &'static [&'static str] {
        &["reregister"]
    }
    fn start(&self, setup: Setup) -> BoxFuture<'static, Result<Box<dyn Instance>, String>> {
        Box::pin(async move {
            let cfg = DeviceConfig {
                amqp_url: setup.var(kit::AMQP_URL)?.to_owned(),
                tenant: setup.var(kit::TENANT)?.to_owned(),
                thing_id: setup.var(kit::THING_ID)?.to_owned(),
                fault: DeviceFault::named(setup.fault.as_deref())?,
                variant: Variant::named(setup.variant.as_deref())?,
                artifact_ca: setup
                    .var(kit::ARTIFACT_CA)
                    .ok()
                    .map(std::fs::read_to_string)
                    .transpose()
                    .map_err(|e| format!("{}: {e}", kit::ARTIFACT_CA))?,
            };
            Ok(Box::new(start(cfg).await?) as Box<dyn Instance>)
        })
    }
}

impl Instance for DeviceHandle {
    fn call<'a>(
        &'a self,
        hook: &'a str,
        _args: &'a serde_json::Map<String, Value>,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            match hook {
                "reregister" => self.reregister().await.map(|()| Value::Null),
                other => Err(format!("the reference device has no hook `{other}`")),
            }
        })
    }
    fn exited(&self) -> Option<String> {
        self.task
            .is_finished()
            .then(|| "the reference device stopped".to_owned())
    }
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { (*self).stop().await })
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
    /// The legal behaviour to show, if any.
    pub variant: Option<Variant>,
    /// The CA to trust for HTTPS downloads (PEM), if given.
    pub artifact_ca: Option<String>,
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

/// What a request asks the device to fetch.
struct Fetch {
    token: Option<String>,
    artifacts: Vec<download::Artifact>,
}

struct Action {
    phase: watch::Receiver<Phase>,
    cancel: watch::Sender<bool>,
    /// Whether it installs once downloaded (a DOWNLOAD_AND_INSTALL, or a
    /// DOWNLOAD that a DOWNLOAD_AND_INSTALL of the same action followed),
    /// and whether an installation has taken it.
    install: Arc<Install>,
}

/// Download only, install wanted, install taken: whoever takes it (the
/// action at its end of download, or the DOWNLOAD_AND_INSTALL that comes
/// after) installs, once.
#[derive(Default)]
struct Install(AtomicU8);

impl Install {
    const WANTED: u8 = 1;
    const TAKEN: u8 = 2;

    fn new(wanted: bool) -> Self {
        Install(AtomicU8::new(if wanted { Self::WANTED } else { 0 }))
    }

    /// Asks for an installation; `false` when one was asked for already.
    fn want(&self) -> bool {
        self.0
            .compare_exchange(0, Self::WANTED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Takes the installation, if one is wanted and none has taken it.
    fn take(&self) -> bool {
        self.0
            .compare_exchange(
                Self::WANTED,
                Self::TAKEN,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }
}

struct Device {
    cfg: DeviceConfig,
    client: AmqpClient,
    reply_to: String,
    actions: Mutex<HashMap<i64, Action>>,
    /// The server deleted the thing: the device no longer acts as it.
    deleted: std::sync::atomic::AtomicBool,
}

/// A running reference device.
pub struct DeviceHandle {
    task: JoinHandle<()>,
    chatter: Option<JoinHandle<()>>,
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
        if let Some(c) = self.chatter {
            c.abort();
        }
        self.task.abort();
        let _ = self.task.await;
        self.device.client.close().await;
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
        deleted: std::sync::atomic::AtomicBool::new(false),
    });
    if device.cfg.variant == Some(Variant::Floods) {
        for i in 0..FLOOD {
            device.report_attributes(i).await?;
        }
    }
    match device.cfg.fault {
        Some(DeviceFault::ExitsAtOnce) => {
            device.client.close().await;
            return Ok(DeviceHandle {
                task: tokio::spawn(async {}),
                chatter: None,
                device,
            });
        }
        Some(DeviceFault::NeverRegisters) => {}
        Some(DeviceFault::FloodsInsteadOfRegistering) => {
            let d = device.clone();
            let flood = tokio::spawn(async move {
                for n in 0.. {
                    if d.report_attributes(n).await.is_err() {
                        break;
                    }
                }
            });
            return Ok(DeviceHandle {
                task: tokio::spawn(std::future::pending()),
                chatter: Some(flood),
                device,
            });
        }
        _ => device.register().await?,
    }
    if device.has(DeviceFault::IgnoresAttributeRequest) {
        let d = device.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            d.send_attributes().await;
        });
    }
    let chatter = (device.cfg.variant == Some(Variant::PollsAndReports)).then(|| {
        let d = device.clone();
        tokio::spawn(async move { d.chatter().await })
    });
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
    Ok(DeviceHandle {
        task,
        chatter,
        device,
    })
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
        let body = if self.has(DeviceFault::HugeRegistration) {
            props["content_type"] = json!("application/json");
            let name = "x".repeat(50_000_000);
            json!({"name": name}).to_string().into_bytes()
        } else {
            Vec::new()
        };
        self.send(headers, props, body).await
    }

    /// What a device of the `polls-and-reports` variant sends of its own
    /// accord: THING_CREATED every 2 s, its attributes every 1.5 s, a
    /// PING every 2.5 s.
    async fn chatter(&self) {
        let mut poll = tokio::time::interval(Duration::from_millis(2000));
        let mut report = tokio::time::interval(Duration::from_millis(1500));
        let mut ping = tokio::time::interval(Duration::from_millis(2500));
        let mut n = 0;
        loop {
            let tick = tokio::select! {
                _ = poll.tick() => 0,
                _ = report.tick() => 1,
                _ = ping.tick() => 2,
            };
            // A deleted thing is no longer polled for, or reported on.
            if self.deleted.load(Ordering::SeqCst) {
                return;
            }
            match tick {
                0 => _ = self.register().await,
                1 => {
                    n += 1;
                    let _ = self.report_attributes(n).await;
                }
                _ => _ = self.ping().await,
            }
        }
    }

    /// Reports its attributes unasked (MERGE), the `n`th time.
    async fn report_attributes(&self, n: usize) -> Result<(), String> {
        let headers = json!({
            "type": "EVENT", "topic": "UPDATE_ATTRIBUTES",
            "tenant": self.cfg.tenant, "thingId": self.cfg.thing_id,
        });
        let body = json!({"attributes": {"uptime": n.to_string()}, "mode": "MERGE"});
        let props = json!({"content_type": "application/json"});
        self.send(headers, props, body.to_string().into_bytes())
            .await
    }

    /// PINGs the server, expecting its time on the reply exchange.
    async fn ping(&self) -> Result<(), String> {
        let headers = json!({"type": "PING", "tenant": self.cfg.tenant});
        let props = json!({
            "reply_to": self.reply_to,
            "correlation_id": uuid::Uuid::new_v4().to_string(),
        });
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
        Ok(self.client.publish(&msg).await?)
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
        if self.has(DeviceFault::DeeplyNestedStatus) {
            let depth = 10_000;
            let nested = format!(
                "{{\"actionId\":{id},\"actionStatus\":\"{status}\",\"message\":{}{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            return self.send_status(nested.into_bytes()).await;
        }
        let body = json!({"actionId": id, "actionStatus": status, "message": [text]});
        self.event_status(body).await;
    }

    async fn event_status(&self, body: Value) {
        self.send_status(body.to_string().into_bytes()).await
    }

    async fn send_status(&self, body: Vec<u8>) {
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
        let _ = self.send(headers, props, body).await;
    }

    /// Handles one message; `false` ends the device's message loop.
    async fn handle(self: Arc<Self>, msg: Message) -> bool {
        let topic = msg.header("topic");
        match (msg.header("type").as_deref(), topic.as_deref()) {
            (Some("EVENT"), Some("DOWNLOAD_AND_INSTALL")) => self.on_deployment(&msg, false).await,
            (Some("EVENT"), Some("DOWNLOAD")) => self.on_deployment(&msg, true).await,
            (Some("EVENT"), Some(t @ ("BATCH_DOWNLOAD_AND_INSTALL" | "BATCH_DOWNLOAD"))) => {
                for one in self.own_entries(&msg) {
                    self.clone()
                        .on_deployment(&one, t == "BATCH_DOWNLOAD")
                        .await;
                }
            }
            (Some("EVENT"), Some("CANCEL_DOWNLOAD")) => self.on_cancel(&msg).await,
            (Some("EVENT"), Some("CONFIRM")) => self.on_confirm(&msg).await,
            (Some("EVENT"), Some("REQUEST_ATTRIBUTES_UPDATE")) => self.on_attribute_request().await,
            (Some("THING_DELETED"), _) => {
                if self.has(DeviceFault::ReregistersAfterDeleted) {
                    // Takes the deletion for a lost registration, and
                    // registers again at once.
                    let _ = self.register().await;
                    return true;
                }
                self.deleted.store(true, Ordering::SeqCst);
                return false;
            }
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

    /// A batch's entries for this device (its own; every one under
    /// `batch-acts-for-all`), each as the single deployment it stands
    /// for: its actionId and token, with the batch's modules.
    fn own_entries(&self, msg: &Message) -> Vec<Message> {
        if self.has(DeviceFault::IgnoresBatch) {
            return Vec::new();
        }
        let body = msg.body_json().unwrap_or_default();
        let mine = |t: &&Value| {
            t["controllerId"].as_str() == Some(self.cfg.thing_id.as_str())
                || self.has(DeviceFault::BatchActsForAll)
        };
        body["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(mine)
            .filter_map(|entry| {
                let one = json!({
                    "actionId": entry["actionId"],
                    "targetSecurityToken": entry["targetSecurityToken"],
                    "softwareModules": body["softwareModules"],
                });
                Some(Message {
                    body: serde_json::to_vec(&one).ok()?,
                    ..msg.clone()
                })
            })
            .collect()
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
        let body = msg.body_json().unwrap_or_default();
        let fetch = Arc::new(Fetch {
            token: body["targetSecurityToken"].as_str().map(str::to_owned),
            artifacts: download::artifacts(&body),
        });
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let install = Arc::new(Install::new(
            !download_only || self.has(DeviceFault::DownloadInstalls),
        ));
        let action = Action {
            phase: phase_rx,
            cancel: cancel_tx,
            install: install.clone(),
        };
        let mut earlier = {
            let mut actions = self.actions.lock().await;
            let earlier = actions
                .get(&id)
                .map(|a| (a.phase.clone(), a.install.clone()));
            match earlier {
                // Its maintenance window opened: the downloaded action is
                // installed now, or once its download is done.
                Some((phase, wanted))
                    if !download_only
                        && !self.has(DeviceFault::WindowNeverInstalls)
                        && wanted.want() =>
                {
                    if *phase.borrow() == Phase::Done && wanted.take() {
                        actions.insert(
                            id,
                            Action {
                                install: wanted,
                                ..action
                            },
                        );
                        drop(actions);
                        tokio::spawn(async move { self.install(id, phase_tx).await });
                    }
                    return;
                }
                Some(_)
                    if !self.has(DeviceFault::DoubleInstall)
                        && !self.has(DeviceFault::InstallsTwiceAtOnce) =>
                {
                    return;
                }
                Some((e, _)) => e,
                None => {
                    actions.insert(id, action);
                    drop(actions);
                    tokio::spawn(async move {
                        self.run_action(id, install, fetch, phase_tx, cancel_rx)
                            .await
                    });
                    return;
                }
            }
        };
        if self.has(DeviceFault::InstallsTwiceAtOnce) {
            tokio::spawn(async move {
                self.run_action(id, install, fetch, phase_tx, cancel_rx)
                    .await
            });
            return;
        }
        // The double-install fault: the request is queued and the action
        // installed again once the first installation is over.
        tokio::spawn(async move {
            let _ = earlier.wait_for(|p| *p == Phase::Done).await;
            self.actions.lock().await.insert(id, action);
            self.run_action(id, install, fetch, phase_tx, cancel_rx)
                .await
        });
    }

    async fn run_action(
        &self,
        id: i64,
        install: Arc<Install>,
        fetch: Arc<Fetch>,
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
        if let Err(why) = self.download(&fetch).await {
            let _ = phase.send(Phase::Done);
            self.status(id, "ERROR", &format!("Download failed: {why}"))
                .await;
            return;
        }
        let _ = tokio::time::timeout(STEP, cancel.changed()).await;
        if canceled(&cancel) {
            return;
        }
        let _ = phase.send(Phase::Downloaded);
        self.status(id, "DOWNLOADED", "Artifacts downloaded").await;
        if self.has(DeviceFault::NoFinalStatus) {
            let _ = phase.send(Phase::Done);
            return;
        }
        if !install.take() {
            let _ = phase.send(Phase::Done);
            // A DOWNLOAD_AND_INSTALL may have come meanwhile and found the
            // download not yet done.
            if !install.take() {
                return;
            }
            let _ = phase.send(Phase::Downloaded);
        }
        tokio::time::sleep(STEP).await;
        if self.has(DeviceFault::RejectedNeverFinishes) && *cancel.borrow() {
            return;
        }
        let _ = phase.send(Phase::Done);
        self.status(id, "FINISHED", "Update installed").await;
    }

    /// Fetches every artifact of a request, as its faults allow.
    async fn download(&self, fetch: &Fetch) -> Result<(), String> {
        if self.has(DeviceFault::FinishesWithoutDownload) {
            return Ok(());
        }
        let token = fetch
            .token
            .as_deref()
            .filter(|_| !self.has(DeviceFault::DownloadsWithoutToken));
        let trust = download::Trust {
            ca_pem: self.cfg.artifact_ca.clone(),
            any_certificate: self.has(DeviceFault::AcceptsAnyCertificate),
            verify: !self.has(DeviceFault::IgnoresHashes),
        };
        for a in &fetch.artifacts {
            download::fetch(a, token, &trust).await?;
        }
        Ok(())
    }

    /// Confirms every action it is asked to: the server then sends it.
    async fn on_confirm(self: Arc<Self>, msg: &Message) {
        if self.has(DeviceFault::ConfirmInstalls) {
            return self.on_deployment(msg, false).await;
        }
        let Some(id) = self.action_id(msg, &["actionId", "targetSecurityToken", "softwareModules"])
        else {
            return;
        };
        if !self.has(DeviceFault::IgnoresConfirm) {
            self.status(id, "CONFIRMED", "Confirmed by the device")
                .await;
        }
    }

    /// Installs an action whose artifacts a DOWNLOAD fetched earlier.
    async fn install(&self, id: i64, phase: watch::Sender<Phase>) {
        let _ = phase.send(Phase::Downloaded);
        self.status(id, "RUNNING", "Installing the downloaded update")
            .await;
        tokio::time::sleep(STEP).await;
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
                    } else if self.has(DeviceFault::CancelsFinished) {
                        "CANCELED"
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
        if !self.has(DeviceFault::IgnoresAttributeRequest) {
            self.send_attributes().await;
        }
    }

    async fn send_attributes(&self) {
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
