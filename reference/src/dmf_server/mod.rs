//! The reference DMF server: correct by default, behaving as hawkBit does
//! for what the DMF reference describes (topology, dead-lettering,
//! re-sending the pending action on THING_CREATED, the cancel flow, field
//! limits, PING), serving the Management API subset that drives a
//! scenario on a local port, and able to carry one realistic mistake at a
//! time ([`ServerFault`]).
//!
//! It serves one tenant, on an inbound exchange and receiver queue that
//! its configuration names, so that several instances share one broker
//! without seeing each other's traffic.

mod mgmt;
mod state;

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::task::JoinHandle;

pub use state::{ATTRIBUTE_MAX, NAME_MAX, THING_ID_MAX};
use state::{State, Verdict};

use crate::Fault;
use dmconf_harness::kit::{self, AmqpClient, Message, dmf};
use dmconf_harness::suite::{Protocol, Role};
use dmconf_harness::{BoxFuture, Instance, Setup};

crate::fault_catalogue! {
    /// A realistic mistake the reference server can be started with.
    pub enum ServerFault {
        /// Registers a thing whose THING_CREATED has no (or an empty) `reply_to`.
        AcceptsNoReplyTo = "accepts-no-reply-to",
        /// Creates the target of a THING_CREATED without `reply_to`, then
        /// refuses the message (no transaction around the two).
        RegistersBeforeRefusing = "registers-before-refusing",
        /// Reads a header sent with a null value as the text `null`.
        NullHeaderAsText = "null-header-as-text",
        /// Registers a thing whose `thingId` header is empty.
        AcceptsEmptyThingId = "accepts-empty-thing-id",
        /// Registers a thing whose `thingId` has whitespace in it.
        AcceptsWhitespaceThingId = "accepts-whitespace-thing-id",
        /// Takes a message without a `tenant` header for its own tenant.
        AcceptsNoTenant = "accepts-no-tenant",
        /// Reads `type` and `topic` case-insensitively and trimmed.
        LenientType = "lenient-type",
        /// Acknowledges server-to-device types and topics sent by a device.
        AcceptsServerMessages = "accepts-server-messages",
        /// Processes JSON bodies whatever their content type.
        IgnoresContentType = "ignores-content-type",
        /// Acknowledges an action status whose body is not JSON, and drops it.
        AcksMalformedStatus = "acks-malformed-status",
        /// Ignores the target type named in the THING_CREATED body.
        IgnoresTargetType = "ignores-target-type",
        /// Registers a thing but drops the name and attributes in the THING_CREATED body.
        IgnoresThingCreatedBody = "ignores-thing-created-body",
        /// Sends a download-only assignment as DOWNLOAD_AND_INSTALL.
        DownloadOnlyAsInstall = "download-only-as-install",
        /// Dead-letters THING_CREATED for a thing it already knows.
        RefusesReregistration = "refuses-reregistration",
        /// Does not send the open action again when a thing re-registers.
        NoResendOnRegister = "no-resend-on-register",
        /// Treats attribute mode REPLACE as MERGE.
        ReplaceMerges = "replace-merges",
        /// Allows attribute keys and values of 129 characters.
        AttributeLimitOff = "attribute-limit-off-by-one",
        /// Acknowledges UPDATE_ATTRIBUTES without `thingId`, and drops it.
        AttributesWithoutThingId = "accepts-attributes-without-thing-id",
        /// Registers a thing id of 257 characters.
        ThingIdLimitOff = "accepts-257-char-thing-id",
        /// Accepts a target name of 129 characters.
        NameLimitOff = "accepts-129-char-name",
        /// Acknowledges a status for an action that does not exist.
        AcceptsUnknownAction = "accepts-unknown-action",
        /// Dead-letters a second final status for a closed action.
        RefusesDuplicateFinal = "refuses-duplicate-final-status",
        /// Fails on a second final status for a closed action and puts it
        /// back in its queue, forever.
        RequeuesDuplicateFinal = "requeues-duplicate-final-status",
        /// Fails on a status without `message` that has a correlation id,
        /// and puts it back in its queue, forever (hawkBit's own, §5.2 of
        /// its DMF reference).
        RequeuesStatusWithoutMessage = "requeues-status-without-message",
        /// Dead-letters an attribute update that changes nothing.
        RefusesUnchangedAttributes = "refuses-unchanged-attributes",
        /// Keeps the reply_to of a thing's first registration.
        KeepsFirstAddress = "keeps-first-address",
        /// Leaves an action open after FINISHED, so it is sent again.
        FinishedKeepsAction = "finished-keeps-action-open",
        /// Takes ERROR as an intermediate status: the action stays open.
        ErrorKeepsAction = "error-keeps-action-open",
        /// Puts another action's id into CANCEL_DOWNLOAD.
        CancelWrongActionId = "cancel-wrong-action-id",
        /// Accepts CANCELED or CANCEL_REJECTED for an action that was never canceled.
        AcceptsUnrequestedCancel = "accepts-unrequested-cancel",
        /// Keeps a canceled action open and keeps sending it.
        KeepsCanceledAction = "keeps-sending-canceled-action",
        /// Holds the next action back after CANCELED until the thing re-registers.
        NoNextAfterCancel = "no-next-after-cancel",
        /// Closes the action on CANCEL_REJECTED instead of resuming it.
        CancelRejectedCloses = "cancel-rejected-closes",
        /// Refuses FINISHED or ERROR for an action being canceled, as if
        /// only CANCELED or CANCEL_REJECTED could answer a cancel.
        RefusesFinalWhileCanceling = "refuses-final-while-canceling",
        /// Asks for the thing's attributes after ERROR too.
        AttributesAfterError = "requests-attributes-after-error",
        /// Never asks for the thing's attributes after FINISHED.
        NoAttributesAfterFinished = "no-attribute-request-after-finished",
        /// Reopens a closed action on a late intermediate status.
        LateStatusReopens = "late-status-reopens",
        /// Acknowledges an attribute update whose body is a JSON string,
        /// and does nothing with it.
        AcksStringAttributeBody = "acks-string-attribute-body",
        /// Acknowledges THING_REMOVED without a thingId, and does nothing.
        AcksAnonymousRemoval = "acks-anonymous-removal",
        /// Sends DOWNLOAD_AND_INSTALL at once for an assignment that needs
        /// the device's confirmation.
        SendsBeforeConfirmation = "sends-before-confirmation",
        /// Takes DENIED for CONFIRMED.
        DeniedInstalls = "denied-installs",
        /// Sends nothing after FINISHED or ERROR: the thing's next action
        /// waits for its next poll.
        NoNextAfterFinished = "no-next-after-finished",
        /// Takes a status with any number of message entries.
        NoStatusMessageQuota = "no-status-message-quota",
        /// Takes any number of attributes.
        NoAttributeQuota = "no-attribute-quota",
        /// Sends DOWNLOAD_AND_INSTALL whatever the maintenance window.
        IgnoresMaintenanceWindow = "ignores-maintenance-window",
        /// Looks for the window's next opening only, so it never finds
        /// one open: every action with a window comes as DOWNLOAD.
        WindowNeverOpen = "window-never-open",
        /// Takes UPDATE_AUTO_CONFIRM with enabled false, and leaves
        /// auto-confirmation on.
        AutoConfirmStaysOn = "auto-confirm-stays-on",
        /// Acknowledges UPDATE_AUTO_CONFIRM, and does nothing with it.
        IgnoresAutoConfirm = "ignores-auto-confirm",
        /// Stores final and cancel-answer statuses without the device's
        /// messages.
        DropsFinalStatusMessages = "drops-final-status-messages",
        /// Stores a status without the code the device reported.
        DropsStatusCode = "drops-status-code",
        /// Answers PING without its correlation id.
        PingDropsCorrelationId = "ping-drops-correlation-id",
        /// Answers PING with a body that is not the server's time.
        PingBodyNotTime = "ping-body-not-time",
        /// Deletes a thing (removed by the device or over the Management
        /// API) without sending THING_DELETED.
        NoThingDeleted = "no-thing-deleted",
        /// Ignores FINISHED for a download-only action it closed at
        /// DOWNLOADED, so the set is never recorded as installed.
        DownloadOnlyFinishIgnored = "download-only-finish-ignored",
        /// Announces each artifact with the SHA-1 of its file name, not of
        /// its bytes.
        AnnouncesWrongSha1 = "announces-wrong-sha1",
        /// Announces every software module without its artifacts.
        AnnouncesNoArtifacts = "announces-no-artifacts",
        /// Serves only an artifact's first 8 KiB, as a download whose stream
        /// ends early.
        ServesTruncatedArtifact = "serves-truncated-artifact",
        /// Serves an artifact to anyone, without the target's token.
        ServesWithoutToken = "serves-without-token",
        /// Sends THING_DELETED to the reply exchange of a thing whose
        /// address is no longer an AMQP one.
        DeletedToAnyAddress = "deleted-to-any-address",
        /// Declares its inbound exchange as a topic exchange.
        ExchangeWrongType = "exchange-wrong-type",
    }
}

/// The reference DMF server, as the harness starts it: one per case, on
/// an inbound exchange and receiver queue of the case's own.
pub struct Reference;

impl dmconf_harness::Reference for Reference {
    fn protocol(&self) -> Protocol {
        Protocol::Dmf
    }
    fn role(&self) -> Role {
        Role::Server
    }
    fn name(&self) -> &'static str {
        "reference DMF server"
    }
    fn faults(&self) -> &'static [&'static str] {
        ServerFault::NAMES
    }
    fn capabilities(&self) -> &'static [&'static str] {
        &[
            "dmf.artifacts",
            "dmf.confirmation",
            "dmf.download-only",
            "dmf.maintenance-window",
            "dmf.robustness",
        ]
    }
    fn serves_management(&self) -> bool {
        true
    }
    fn start(&self, setup: Setup) -> BoxFuture<'static, Result<Box<dyn Instance>, String>> {
        Box::pin(async move {
            let receiver = setup.var(kit::DMF_RECEIVER_QUEUE).ok().map(str::to_owned);
            let cfg = ServerConfig {
                amqp_url: setup.var(kit::AMQP_URL)?.to_owned(),
                tenant: setup.var(kit::TENANT)?.to_owned(),
                exchange: setup.var(kit::DMF_EXCHANGE)?.to_owned(),
                private: receiver.is_some(),
                receiver_queue: receiver.unwrap_or_else(|| dmf::RECEIVER_QUEUE.to_owned()),
                mgmt_port: 0,
                fault: ServerFault::named(setup.fault.as_deref())?,
            };
            Ok(Box::new(start(cfg).await?) as Box<dyn Instance>)
        })
    }
}

impl Instance for ServerHandle {
    fn call<'a>(
        &'a self,
        hook: &'a str,
        _args: &'a serde_json::Map<String, Value>,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            Err(format!(
                "the reference server serves `{hook}` through its Management API"
            ))
        })
    }
    fn management(&self) -> Option<String> {
        Some(self.mgmt_url.clone())
    }
    fn exited(&self) -> Option<String> {
        self.amqp
            .is_finished()
            .then(|| "the reference server stopped".to_owned())
    }
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { (*self).stop().await })
    }
}

/// How a reference server is started.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Broker URL.
    pub amqp_url: String,
    /// The tenant it serves.
    pub tenant: String,
    /// Its inbound exchange (hawkBit: `dmf.exchange`).
    pub exchange: String,
    /// Its receiver queue (hawkBit: `dmf_receiver`).
    pub receiver_queue: String,
    /// Delete the exchange and queue when stopped (an instance of its own
    /// for one case).
    pub private: bool,
    /// The Management API's port on 127.0.0.1; 0 for a free one.
    pub mgmt_port: u16,
    /// The mistake to make, if any.
    pub fault: Option<ServerFault>,
}

struct Shared {
    state: Mutex<State>,
    client: AmqpClient,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes what the server sends. Like hawkBit, it does not learn
    /// whether a device's exchange exists: a failed publish is dropped.
    async fn send(&self, out: Vec<Message>) {
        for m in out {
            let _ = self.client.publish(&m).await;
        }
    }
}

/// A running reference server.
pub struct ServerHandle {
    cfg: ServerConfig,
    shared: Arc<Shared>,
    amqp: JoinHandle<()>,
    http: JoinHandle<()>,
    /// Base URL of its Management API (`http://127.0.0.1:port`).
    pub mgmt_url: String,
}

/// Starts a reference server: declares hawkBit's topology, consumes its
/// receiver queue, and serves the Management API on a free local port.
pub async fn start(cfg: ServerConfig) -> Result<ServerHandle, String> {
    let client = AmqpClient::connect(&cfg.amqp_url).await?;
    let kind = if cfg.fault == Some(ServerFault::ExchangeWrongType) {
        "topic"
    } else {
        "fanout"
    };
    dmf::declare_topology(&client, &cfg.exchange, kind, &cfg.receiver_queue).await?;
    let mut inbox = client.consume_manual(&cfg.receiver_queue, 250).await?;

    let shared = Arc::new(Shared {
        state: Mutex::new(State::new(&cfg.tenant, cfg.fault)),
        client,
    });
    let s = shared.clone();
    let amqp = tokio::spawn(async move {
        while let Some((msg, delivery)) = inbox.recv().await {
            let (verdict, out) = s.state().handle(&msg, dmf::now_ms());
            s.send(out).await;
            match verdict {
                Verdict::Accept => delivery.accept().await,
                Verdict::Refuse(_) => delivery.reject().await,
                Verdict::Requeue(_) => delivery.requeue().await,
            }
        }
    });
    let (http, mgmt_url) = mgmt::serve(shared.clone(), cfg.mgmt_port).await?;
    Ok(ServerHandle {
        cfg,
        shared,
        amqp,
        http,
        mgmt_url,
    })
}

impl ServerHandle {
    /// Stops the server and, for a private instance, removes its exchange
    /// and queue.
    pub async fn stop(self) {
        self.http.abort();
        self.amqp.abort();
        if self.cfg.private {
            self.shared
                .client
                .delete_queue(&self.cfg.receiver_queue)
                .await;
            self.shared.client.delete_exchange(&self.cfg.exchange).await;
        }
        self.shared.client.close().await;
    }
}
