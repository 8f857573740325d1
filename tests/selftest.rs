//! The self-test: proves that the suites can fail, and only when they
//! should. Each row of the fault tables starts a reference implementation
//! with one mistake (realistic, or hostile: bombs, floods, huge or
//! malformed messages) and runs one case against it; the row passes only
//! if the case fails, at the step the row names. Two checks keep the table
//! honest: every case has a row, and every fault of the catalogue is used.
//! Each legal variant of a reference (requests of its own, polls) must
//! pass every case of its role. Then: the references run as commands, a
//! run killed with SIGKILL leaves nothing behind, secrets are never shown,
//! hostile SUTs keep the process's memory bounded, and broken suite files
//! under `fixtures/broken-suites/` are reported at the line and column
//! their first line announces.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use dmconf_harness::suite::{Protocol, Role};
use dmconf_harness::{BrokerSpec, Harness, Planned, Profile};
use libtest_mimic::{Arguments, Failed, Trial};

/// Device fault, case, and the step that must fail (its name, or its kind
/// when it has none).
const DEVICE_FAULTS: &[(&str, &str, &str)] = &[
    (
        "no-reply-to",
        "dmf::device::registration::thing-created",
        "registration",
    ),
    (
        "no-tenant-header",
        "dmf::device::registration::thing-created",
        "registration",
    ),
    (
        "no-reply-exchange",
        "dmf::device::registration::thing-created",
        "check",
    ),
    (
        "ignores-attribute-request",
        "dmf::device::attributes::answers-attribute-request",
        "expect",
    ),
    (
        "attributes-without-thing-id",
        "dmf::device::attributes::answers-attribute-request",
        "expect",
    ),
    (
        "bad-status-value",
        "dmf::device::download-and-install::lifecycle",
        "statuses",
    ),
    (
        "status-wrong-action-id",
        "dmf::device::download-and-install::lifecycle",
        "statuses",
    ),
    (
        "no-final-status",
        "dmf::device::download-and-install::lifecycle",
        "statuses",
    ),
    (
        "status-without-content-type",
        "dmf::device::download-and-install::lifecycle",
        "statuses",
    ),
    (
        "strict-json",
        "dmf::device::download-and-install::unknown-fields-tolerated",
        "collect",
    ),
    (
        "crash-on-unknown-topic",
        "dmf::device::download-and-install::unknown-topic-tolerated",
        "collect",
    ),
    (
        "download-installs",
        "dmf::device::download-only::ends-at-downloaded",
        "expect_none",
    ),
    (
        "finishes-without-download",
        "dmf::device::download::fetched-before-finished",
        "fetched",
    ),
    (
        "finishes-without-download",
        "dmf::device::download::missing-artifact-fails",
        "expect",
    ),
    (
        "finishes-without-download",
        "dmf::device::download::download-only-fetches",
        "fetched",
    ),
    (
        "downloads-without-token",
        "dmf::device::download::fetched-before-finished",
        "fetched",
    ),
    (
        "ignores-hashes",
        "dmf::device::download::tampered-artifact-refused",
        "expect",
    ),
    (
        "batch-acts-for-all",
        "dmf::device::batch::own-entry-installed",
        "expect_none",
    ),
    (
        "ignores-batch",
        "dmf::device::batch::own-entry-installed",
        "statuses",
    ),
    (
        "ignores-batch",
        "dmf::device::batch::own-entry-downloaded",
        "statuses",
    ),
    (
        "accepts-any-certificate",
        "dmf::device::download::unsigned-certificate-refused",
        "ended",
    ),
    (
        "finishes-without-download",
        "dmf::device::download::https-fetched",
        "fetched",
    ),
    (
        "confirm-installs",
        "dmf::device::confirmation::confirm-answered",
        "answer",
    ),
    (
        "ignores-confirm",
        "dmf::device::confirmation::confirm-answered",
        "answer",
    ),
    (
        "reregisters-after-deleted",
        "dmf::device::deletion::stays-deleted",
        "expect_none",
    ),
    (
        "window-never-installs",
        "dmf::device::maintenance-window::window-opens",
        "installed",
    ),
    (
        "cancels-finished",
        "dmf::device::cancel::cancel-after-finished",
        "answer",
    ),
    (
        "cancel-answered-finished",
        "dmf::device::cancel::cancel-early",
        "answer",
    ),
    (
        "cancel-silent",
        "dmf::device::cancel::cancel-early",
        "answer",
    ),
    (
        "cancel-wrong-action-id",
        "dmf::device::cancel::cancel-early",
        "answer",
    ),
    (
        "status-tenant-is-thing-id",
        "dmf::device::cancel::cancel-early",
        "answer",
    ),
    (
        "cancel-answered-twice",
        "dmf::device::cancel::cancel-early",
        "expect_none",
    ),
    (
        "finished-after-canceled",
        "dmf::device::cancel::cancel-early",
        "expect_none",
    ),
    (
        "cancel-silent",
        "dmf::device::cancel::cancel-late",
        "answer",
    ),
    (
        "rejected-never-finishes",
        "dmf::device::cancel::cancel-late",
        "completion",
    ),
    (
        "ignores-unknown-cancel",
        "dmf::device::cancel::cancel-unknown-action",
        "answer",
    ),
    (
        "installs-twice-at-once",
        "dmf::device::idempotency::duplicate-while-running",
        "downloaded-once",
    ),
    (
        "installs-twice-at-once",
        "dmf::device::idempotency::reregistration",
        "downloaded-once",
    ),
    (
        "double-install",
        "dmf::device::idempotency::duplicate-while-running",
        "downloaded-once",
    ),
    (
        "double-install",
        "dmf::device::idempotency::duplicate-after-finished",
        "expect_none",
    ),
    (
        "double-install",
        "dmf::device::idempotency::reregistration",
        "downloaded-once",
    ),
    (
        "huge-registration",
        "dmf::device::registration::thing-created",
        "registration",
    ),
    (
        "exits-at-once",
        "dmf::device::registration::thing-created",
        "registration",
    ),
    (
        "never-registers",
        "dmf::device::registration::thing-created",
        "registration",
    ),
    (
        "floods-instead-of-registering",
        "dmf::device::registration::thing-created",
        "registration",
    ),
    (
        "deeply-nested-status",
        "dmf::device::download-and-install::lifecycle",
        "statuses",
    ),
];

/// Server fault, case, and the step that must fail.
const SERVER_FAULTS: &[(&str, &str, &str)] = &[
    (
        "drops-status-code",
        "dmf::server::action-status::intermediate-statuses-recorded",
        "query",
    ),
    (
        "ignores-auto-confirm",
        "dmf::server::auto-confirm::assignments-sent-at-once",
        "expect",
    ),
    (
        "auto-confirm-stays-on",
        "dmf::server::auto-confirm::switched-off",
        "expect",
    ),
    (
        "ignores-auto-confirm",
        "dmf::server::auto-confirm::waiting-action-confirmed",
        "query",
    ),
    (
        "window-never-open",
        "dmf::server::maintenance-window::window-open",
        "expect",
    ),
    (
        "ignores-maintenance-window",
        "dmf::server::maintenance-window::window-later",
        "expect",
    ),
    (
        "no-status-message-quota",
        "dmf::server::limits::status-message-quota",
        "expect_refused",
    ),
    (
        "no-attribute-quota",
        "dmf::server::limits::attribute-quota",
        "expect_refused",
    ),
    (
        "no-next-after-finished",
        "dmf::server::cancel::next-action-follows-finished",
        "expect",
    ),
    (
        "sends-before-confirmation",
        "dmf::server::confirmation::confirmed-then-sent",
        "confirm",
    ),
    (
        "denied-installs",
        "dmf::server::confirmation::denied-keeps-waiting",
        "expect_none",
    ),
    (
        "acks-string-attribute-body",
        "dmf::server::attributes::string-body-refused",
        "expect_refused",
    ),
    (
        "acks-anonymous-removal",
        "dmf::server::removal::thing-id-required",
        "expect_refused",
    ),
    (
        "requests-attributes-after-error",
        "dmf::server::action-status::no-attribute-request-after-error",
        "expect_none",
    ),
    (
        "no-attribute-request-after-finished",
        "dmf::server::action-status::attributes-requested-after-finished",
        "expect",
    ),
    (
        "late-status-reopens",
        "dmf::server::action-status::late-status-keeps-closed",
        "query",
    ),
    (
        "refuses-final-while-canceling",
        "dmf::server::cancel::finished-while-canceling",
        "query",
    ),
    (
        "refuses-final-while-canceling",
        "dmf::server::cancel::error-while-canceling",
        "query",
    ),
    (
        "exchange-wrong-type",
        "dmf::server::topology::inbound-exchange",
        "check",
    ),
    (
        "refuses-reregistration",
        "dmf::server::registration::reregistration-resends-open-action",
        "expect_accepted",
    ),
    (
        "no-resend-on-register",
        "dmf::server::registration::reregistration-resends-open-action",
        "expect",
    ),
    (
        "keeps-first-address",
        "dmf::server::registration::address-change",
        "expect",
    ),
    (
        "accepts-no-reply-to",
        "dmf::server::registration::reply-to-required",
        "expect_refused",
    ),
    (
        "ignores-thing-created-body",
        "dmf::server::registration::registration-with-body",
        "query",
    ),
    (
        "download-only-as-install",
        "dmf::server::action-status::download-only",
        "expect",
    ),
    (
        "registers-before-refusing",
        "dmf::server::registration::reply-to-required",
        "query",
    ),
    (
        "ignores-target-type",
        "dmf::server::registration::target-type",
        "query",
    ),
    (
        "deleted-to-any-address",
        "dmf::server::removal::no-message-to-a-ddi-address",
        "expect_none",
    ),
    (
        "null-header-as-text",
        "dmf::server::registration::thing-id-required",
        "null-refused",
    ),
    (
        "accepts-no-tenant",
        "dmf::server::registration::tenant-and-type-required",
        "expect_refused",
    ),
    (
        "accepts-empty-thing-id",
        "dmf::server::registration::thing-id-required",
        "expect_refused",
    ),
    (
        "lenient-type",
        "dmf::server::registration::type-matched-exactly",
        "expect_refused",
    ),
    (
        "lenient-type",
        "dmf::server::events::topic-matched-exactly",
        "expect_refused",
    ),
    (
        "accepts-server-messages",
        "dmf::server::registration::server-types-refused",
        "expect_refused",
    ),
    (
        "accepts-server-messages",
        "dmf::server::events::server-topics-refused",
        "expect_refused",
    ),
    (
        "ignores-content-type",
        "dmf::server::registration::body-must-be-json",
        "expect_refused",
    ),
    (
        "ignores-content-type",
        "dmf::server::events::content-type-json",
        "expect_refused",
    ),
    (
        "acks-malformed-status",
        "dmf::server::events::malformed-status",
        "expect_refused",
    ),
    (
        "replace-merges",
        "dmf::server::attributes::three-modes",
        "query",
    ),
    (
        "refuses-unchanged-attributes",
        "dmf::server::attributes::merge-twice",
        "expect_accepted",
    ),
    (
        "accepts-attributes-without-thing-id",
        "dmf::server::attributes::thing-id-required",
        "expect_refused",
    ),
    (
        "accepts-257-char-thing-id",
        "dmf::server::limits::thing-id-length",
        "expect_refused",
    ),
    (
        "attribute-limit-off-by-one",
        "dmf::server::limits::attribute-length",
        "expect_refused",
    ),
    (
        "accepts-129-char-name",
        "dmf::server::limits::name-length",
        "expect_refused",
    ),
    (
        "accepts-unknown-action",
        "dmf::server::action-status::unknown-action",
        "expect_refused",
    ),
    (
        "refuses-duplicate-final-status",
        "dmf::server::action-status::duplicate-final-ignored",
        "expect_accepted",
    ),
    (
        "download-only-finish-ignored",
        "dmf::server::action-status::download-only-then-installed",
        "query",
    ),
    (
        "announces-wrong-sha1",
        "dmf::server::artifacts::announced",
        "expect",
    ),
    (
        "announces-no-artifacts",
        "dmf::server::artifacts::announced",
        "expect",
    ),
    (
        "announces-no-artifacts",
        "dmf::server::artifacts::downloadable",
        "expect",
    ),
    (
        "serves-truncated-artifact",
        "dmf::server::artifacts::downloadable",
        "fetch",
    ),
    (
        "serves-without-token",
        "dmf::server::artifacts::token-required",
        "anonymous",
    ),
    (
        "drops-final-status-messages",
        "dmf::server::action-status::error-closes-action",
        "query",
    ),
    (
        "drops-final-status-messages",
        "dmf::server::cancel::cancel-rejected-keeps-running",
        "query",
    ),
    (
        "requeues-duplicate-final-status",
        "dmf::server::action-status::duplicate-final-ignored",
        "expect_accepted",
    ),
    (
        "requeues-status-without-message",
        "dmf::server::action-status::status-without-message",
        "expect_accepted",
    ),
    (
        "finished-keeps-action-open",
        "dmf::server::action-status::duplicate-final-ignored",
        "query",
    ),
    (
        "cancel-wrong-action-id",
        "dmf::server::cancel::cancel-download-sent",
        "cancel",
    ),
    (
        "keeps-sending-canceled-action",
        "dmf::server::cancel::canceled-closes-action",
        "query",
    ),
    (
        "no-next-after-cancel",
        "dmf::server::cancel::next-action-follows-cancel",
        "expect",
    ),
    (
        "cancel-rejected-closes",
        "dmf::server::cancel::cancel-rejected-keeps-running",
        "query",
    ),
    (
        "accepts-unrequested-cancel",
        "dmf::server::cancel::unrequested-cancel-answer-refused",
        "expect_refused",
    ),
    (
        "ping-drops-correlation-id",
        "dmf::server::ping::ping-answered",
        "pong",
    ),
    (
        "ping-body-not-time",
        "dmf::server::ping::ping-answered",
        "pong",
    ),
    (
        "no-thing-deleted",
        "dmf::server::removal::thing-removed",
        "expect",
    ),
    (
        "no-thing-deleted",
        "dmf::server::removal::deleted-by-management",
        "expect",
    ),
    (
        "accepts-whitespace-thing-id",
        "dmf::server::registration::thing-id-required",
        "expect_refused",
    ),
    (
        "error-keeps-action-open",
        "dmf::server::action-status::error-closes-action",
        "query",
    ),
];

/// Device API device fault, case, and the step that must fail.
const ABILITY_DEVICE_FAULTS: &[(&str, &str, &str)] = &[
    (
        "omits-version",
        "ability::device::requests::well-formed-request",
        "expect",
    ),
    (
        "gzip-declared-plain",
        "ability::device::compression::gzip-declared-is-gzip",
        "expect",
    ),
    (
        "sends-oversized-d2c",
        "ability::device::limits::d2c-limit",
        "wait",
    ),
    (
        "hangs-on-large-c2d",
        "ability::device::c2d::survives-large-notification",
        "expect",
    ),
    (
        "no-property-decoding",
        "ability::device::c2d::property-values-decoded",
        "query",
    ),
    (
        "no-property-decoding",
        "ability::device::c2d::context-decoded",
        "query",
    ),
    (
        "double-encodes-values",
        "ability::device::requests::context-as-given",
        "expect",
    ),
    (
        "deflate-sends-gzip",
        "ability::device::compression::deflate-declared-is-deflate",
        "expect",
    ),
    (
        "publishes-qos2",
        "ability::device::requests::well-formed-request",
        "expect",
    ),
    (
        "sends-gzip-bomb",
        "ability::device::compression::gzip-declared-is-gzip",
        "expect",
    ),
    (
        "sends-deflate-bomb",
        "ability::device::compression::deflate-declared-is-deflate",
        "expect",
    ),
    (
        "malformed-property-bag",
        "ability::device::requests::context-as-given",
        "expect",
    ),
    (
        "non-utf8-body",
        "ability::device::requests::well-formed-request",
        "expect",
    ),
    (
        "logs-in-as-another-id",
        "ability::device::requests::well-formed-request",
        "trigger",
    ),
    (
        "identity-in-header",
        "ability::device::identity::create",
        "expect",
    ),
    (
        "identity-in-header",
        "ability::device::identity::delete",
        "expect",
    ),
    (
        "update-without-object-id",
        "ability::device::models::update",
        "expect",
    ),
    (
        "patch-version-as-text",
        "ability::device::models::patch",
        "expect",
    ),
    ("ids-in-body", "ability::device::models::delete", "expect"),
    (
        "arrays-as-objects",
        "ability::device::models::owner-remove",
        "expect",
    ),
    (
        "arrays-as-objects",
        "ability::device::references::create",
        "expect",
    ),
    (
        "ids-in-body",
        "ability::device::references::delete",
        "expect",
    ),
    (
        "type-id-in-header",
        "ability::device::types::create",
        "expect",
    ),
    ("ids-in-body", "ability::device::types::delete", "expect"),
    ("filter-as-query", "ability::device::types::query", "expect"),
    (
        "ids-in-body",
        "ability::device::extensions::create",
        "expect",
    ),
    (
        "extension-get-without-ack",
        "ability::device::extensions::get-asks-for-its-answer",
        "expect",
    ),
    (
        "batch-body-object",
        "ability::device::batch::entries-in-an-array",
        "expect",
    ),
    (
        "sends-oversized-headers",
        "ability::device::limits::header-limit",
        "wait",
    ),
    (
        "crashes-on-unknown-property",
        "ability::device::c2d::unknown-properties-tolerated",
        "query",
    ),
    (
        "chokes-on-empty-values",
        "ability::device::c2d::empty-null-and-reserved-values",
        "query",
    ),
    (
        "no-c2d-decompression",
        "ability::device::c2d::gzip-ack-read",
        "query",
    ),
    (
        "no-c2d-decompression",
        "ability::device::c2d::deflate-notification-read",
        "query",
    ),
    (
        "stops-on-unknown-error-code",
        "ability::device::c2d::negative-acks-tolerated",
        "query",
    ),
    (
        "crashes-on-duplicate",
        "ability::device::c2d::duplicate-tolerated",
        "query",
    ),
    (
        "subscribes-qos0",
        "ability::device::c2d::queued-while-offline",
        "delivered",
    ),
    (
        "clean-session",
        "ability::device::c2d::queued-while-offline",
        "delivered",
    ),
];

/// Device API platform fault, case, and the step that must fail.
const ABILITY_CLOUD_FAULTS: &[(&str, &str, &str)] = &[
    (
        "drops-context-from-acks",
        "ability::server::context::ack-carries-context",
        "ack-ascii",
    ),
    (
        "reencodes-context",
        "ability::server::context::exotic-context",
        "ack-reserved",
    ),
    (
        "drops-context-from-notifications",
        "ability::server::context::notifications-carry-context",
        "notification",
    ),
    (
        "ignores-elevated-context",
        "ability::server::batch::context",
        "elevated-notification",
    ),
    (
        "loses-entry-context",
        "ability::server::batch::entry-context",
        "entry-notification",
    ),
    (
        "different-result-on-repeat",
        "ability::server::idempotency::repeated-request-same-response",
        "second",
    ),
    (
        "duplicate-model-on-repeat",
        "ability::server::idempotency::model-create-with-object-id",
        "expect_none",
    ),
    (
        "accepts-oversized-headers",
        "ability::server::limits::header-limit",
        "over-limit",
    ),
    (
        "wrong-header-limit-error",
        "ability::server::limits::header-limit",
        "over-limit",
    ),
    (
        "sends-oversized-c2d",
        "ability::server::limits::c2d-limit",
        "answer",
    ),
    (
        "acks-regardless-of-level",
        "ability::server::ack-levels::ack-none",
        "expect_none",
    ),
    (
        "missing-ack-means-all",
        "ability::server::ack-levels::ack-absent",
        "expect_none",
    ),
    (
        "acks-regardless-of-level",
        "ability::server::ack-levels::ack-positive",
        "expect_none",
    ),
    (
        "acks-regardless-of-level",
        "ability::server::ack-levels::ack-negative",
        "expect_none",
    ),
    (
        "drops-correlation-id",
        "ability::server::ack-levels::ack-all",
        "expect",
    ),
    (
        "drops-correlation-id",
        "ability::server::correlation::correlation-id-echoed",
        "expect",
    ),
    (
        "no-generated-correlation-id",
        "ability::server::correlation::correlation-id-generated",
        "expect",
    ),
    (
        "ignores-content-encoding",
        "ability::server::compression::compressed-request-honoured",
        "expect",
    ),
    (
        "wrong-decompression-error",
        "ability::server::compression::corrupt-gzip-refused",
        "expect",
    ),
    (
        "drops-incomplete-requests",
        "ability::server::validation::missing-msg-type",
        "expect",
    ),
    (
        "drops-incomplete-requests",
        "ability::server::validation::missing-action",
        "expect",
    ),
    (
        "ignores-version",
        "ability::server::validation::missing-version",
        "expect",
    ),
    (
        "ignores-version",
        "ability::server::validation::wrong-version",
        "expect",
    ),
    (
        "drops-unknown-msg-type",
        "ability::server::validation::wrong-msg-type",
        "expect",
    ),
    (
        "unknown-action-ok",
        "ability::server::validation::unknown-action",
        "expect",
    ),
    (
        "drops-invalid-ack",
        "ability::server::validation::invalid-ack",
        "expect",
    ),
    (
        "ignores-timeout",
        "ability::server::validation::non-integer-timeout",
        "expect",
    ),
    (
        "ignores-content-type",
        "ability::server::validation::content-type-not-json",
        "expect",
    ),
    (
        "non-json-internal-error",
        "ability::server::validation::body-not-json",
        "expect",
    ),
    (
        "missing-actions",
        "ability::server::actions::owner-remove",
        "removed",
    ),
    (
        "missing-actions",
        "ability::server::actions::types",
        "created",
    ),
    (
        "update-not-stored",
        "ability::server::actions::model-update",
        "new-values",
    ),
    (
        "patch-replaces",
        "ability::server::actions::model-patch",
        "merged",
    ),
    (
        "delete-not-applied",
        "ability::server::actions::model-delete",
        "gone",
    ),
    (
        "owner-remove-takes-many",
        "ability::server::actions::owner-remove-one-only",
        "rejected",
    ),
    (
        "references-not-queried",
        "ability::server::actions::reference-in-query",
        "reference-notification",
    ),
    (
        "reference-repeat-fails",
        "ability::server::actions::references",
        "created-again",
    ),
    (
        "extension-not-stored",
        "ability::server::actions::extensions",
        "found",
    ),
    (
        "extension-get-any-ack",
        "ability::server::actions::extension-get-needs-ack",
        "refused",
    ),
    (
        "notifies-model-create",
        "ability::server::actions::model-create-ack-only",
        "no-notification",
    ),
    (
        "dedups-by-correlation-id",
        "ability::server::actions::model-update",
        "repeat-answered",
    ),
    (
        "dedups-by-correlation-id",
        "ability::server::actions::types",
        "repeat-answered",
    ),
    (
        "drops-context-from-acks",
        "ability::server::actions::model-patch",
        "patched",
    ),
    (
        "drops-context-from-acks",
        "ability::server::actions::types",
        "created",
    ),
    (
        "timeout-not-enforced",
        "ability::server::timeout::timeout-exceeded",
        "exceeded",
    ),
    (
        "drops-oversized-answer",
        "ability::server::limits::response-too-large",
        "answer",
    ),
    (
        "sends-oversized-c2d",
        "ability::server::limits::response-too-large",
        "answer",
    ),
    (
        "batch-ignores-fail-on-error",
        "ability::server::batch::fail-on-error",
        "not-run",
    ),
    (
        "batch-stops-on-error",
        "ability::server::batch::goes-on-after-error",
        "ran",
    ),
    (
        "batch-ignores-depends-on",
        "ability::server::batch::depends-on",
        "dependent-not-run",
    ),
];

/// The protocol and role of a case, from its name.
fn protocol_and_role(case: &str) -> (Protocol, Role) {
    let mut parts = case.split("::");
    let protocol = parts
        .next()
        .and_then(Protocol::from_name)
        .unwrap_or(Protocol::Dmf);
    let role = match parts.next() {
        Some("server") => Role::Server,
        _ => Role::Device,
    };
    (protocol, role)
}

/// A profile that runs `dmconf-reference <kind>` as the server under
/// test, on broker objects apart from those the other trials use (its
/// own DMF exchange and queue; devices of its own for the platform).
fn command_server(kind: &str) -> Result<Profile, Failed> {
    let exe = env!("CARGO_BIN_EXE_dmconf-reference");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let text = match kind {
        "dmf-server" => format!(
            r#"
            [sut]
            role = "server"
            command = ["{exe}", "dmf-server", "--mgmt-port", "{port}", "--receiver-queue", "dmconf.selftest.receiver"]
            ready = "ready"
            capabilities = ["dmf.download-only"]
            [sut.mgmt]
            url = "http://127.0.0.1:{port}"
            [dmf]
            exchange = "dmconf.selftest.exchange"
            "#
        ),
        _ => format!(
            r#"
            [sut]
            protocol = "ability"
            role = "server"
            command = ["{exe}", "ability-platform", "--device-prefix", "dmconf-cmd-"]
            ready = "ready"
            capabilities = ["ability.response-too-large"]
            # Other trials' platforms and devices share the broker: this
            # platform serves only the devices of this trial.
            id_prefix = "dmconf-cmd-"
            "#
        ),
    };
    Profile::parse(&text, Path::new(&format!("command-{kind}.toml")))
        .map_err(|e| Failed::from(e.to_string()))
}

/// Runs every case in `cases` against `profile` at once, joins them all,
/// and fails with the text of the first that did not pass.
fn all_pass(h: &Arc<Harness>, profile: Profile, cases: Vec<Planned>) -> Result<(), Failed> {
    let profile = Arc::new(profile);
    let runs: Vec<_> = cases
        .into_iter()
        .map(|p| {
            let (h, profile) = (h.clone(), profile.clone());
            std::thread::spawn(move || h.run(&profile, &p))
        })
        .collect();
    // Join every case before judging, so that none outlives the trial
    // holding the harness (and its brokers) alive.
    let results: Vec<_> = runs.into_iter().map(|r| r.join()).collect();
    for r in results {
        let judged = r.map_err(|_| "a case panicked")?;
        if !judged.verdict.passed() {
            return Err(judged.text.into());
        }
    }
    Ok(())
}

/// The variable that makes this binary the victim of the kill test: a
/// run with a hanging device command, which writes its pid to the file
/// the variable names.
const VICTIM: &str = "DMCONF_SELFTEST_VICTIM";

/// The victim's body: one case against a device that hangs (and starts a
/// child of its own), until it is killed.
fn victim(marker: &str) -> ExitCode {
    let root = dmconf_harness::root().expect("a dmconf checkout");
    let Ok(h) = Harness::load(root, BrokerSpec::default(), dmconf_reference::all()) else {
        return ExitCode::FAILURE;
    };
    let text = format!(
        "[sut]\ncommand = [\"sh\", \"-c\", \"echo $$ > {marker}.tmp && mv {marker}.tmp {marker}; sleep 1000 & sleep 1001\"]\n"
    );
    let Ok(profile) = Profile::parse(&text, Path::new("victim.toml")) else {
        return ExitCode::FAILURE;
    };
    let case = h
        .plan(&profile)
        .into_iter()
        .find(|p| p.name == "dmf::device::registration::thing-created");
    if let Some(case) = case {
        h.run(&profile, &case);
    }
    ExitCode::SUCCESS
}

/// Whether `docker ps` shows a container of process `owner`.
fn containers_of(owner: u32) -> Result<bool, String> {
    let out = std::process::Command::new("docker")
        // Also those created and never started: they hold the run's
        // secrets in their environment.
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=dmconf.owner={owner}"),
        ])
        .output()
        .map_err(|e| format!("docker ps: {e}"))?;
    Ok(!out.stdout.trim_ascii().is_empty())
}

/// Whether process group `group` has a member left.
fn group_alive(group: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("kill -0 -{group} 2>/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// A run killed with SIGKILL leaves no container and no SUT process.
fn kill_leaves_nothing() -> Result<(), Failed> {
    let marker = std::env::temp_dir().join(format!("dmconf-victim-{}", std::process::id()));
    let marker_text = marker.display().to_string();
    let mut victim =
        std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .env(VICTIM, &marker_text)
            // A plain test process, not one of a nextest run, whose
            // brokers are shared and outlive it.
            .env_remove("NEXTEST_RUN_ID")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let group = loop {
        if let Ok(pid) = std::fs::read_to_string(&marker) {
            break pid.trim().to_owned();
        }
        if started.elapsed() > std::time::Duration::from_secs(180) {
            let _ = victim.kill();
            return Err("the victim's SUT never started".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = std::fs::remove_file(&marker);
    let owner = victim.id();
    if !containers_of(owner)? || !group_alive(&group) {
        let _ = victim.kill();
        return Err("the victim runs no broker or no SUT to leave behind".into());
    }
    victim.kill().map_err(|e| e.to_string())?;
    let _ = victim.wait();
    let killed = std::time::Instant::now();
    while killed.elapsed() < std::time::Duration::from_secs(30) {
        if !containers_of(owner)? && !group_alive(&group) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    Err(format!(
        "30 s after SIGKILL: container left: {}, SUT group {group} left: {}",
        containers_of(owner)?,
        group_alive(&group)
    )
    .into())
}

/// `dmconf list --json`, run from another folder, finds its suites beside
/// itself and names every case of the built-in references with its
/// requirements.
fn binary_lists(planned: usize) -> Result<(), Failed> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dmconf"))
        .args(["list", "--json"])
        .current_dir(std::env::temp_dir())
        .env_remove("DMCONF_ROOT")
        .env_remove("DMCONF_PROFILE")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("dmconf list: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let cases: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("not JSON: {e}"))?;
    let runs = cases.iter().filter(|c| c["applies"] == true).count();
    let bare = cases
        .iter()
        .find(|c| c["requirements"].as_array().is_none_or(|r| r.is_empty()));
    match bare {
        _ if runs != planned => {
            Err(format!("dmconf list: {runs} cases apply; the plan has {planned}").into())
        }
        Some(c) => Err(format!("{} lists no requirement", c["case"]).into()),
        None => Ok(()),
    }
}

/// The headless browser the HTML report is checked in, if the machine has
/// one (`.ci/run` installs Debian's chromium; without it the check shows
/// as ignored).
fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_owned)
}

/// A folder of its own for a check, emptied.
fn scratch(tag: &str) -> Result<PathBuf, Failed> {
    let dir = std::env::temp_dir().join(format!("dmconf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// The `dmconf` binary on the platform reference with `ignores-version`,
/// its suite `validation` only, its bundle under `dir/reports`.
fn failing_run(dir: &Path) -> std::process::Command {
    let profile = dir.join("profile.toml");
    let _ = std::fs::write(
        &profile,
        "[sut]\nprotocol = \"ability\"\nreference = \"server\"\nfault = \"ignores-version\"\n",
    );
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_dmconf"));
    run.arg("ability::server::validation")
        .env("DMCONF_PROFILE", &profile)
        .env("DMCONF_REPORT_DIR", dir.join("reports"))
        .env_remove("NEXTEST_RUN_ID")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    run
}

/// The one bundle folder under `dir/reports`.
fn bundle_in(dir: &Path) -> Result<PathBuf, Failed> {
    std::fs::read_dir(dir.join("reports"))
        .map_err(|e| format!("no bundle: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .ok_or_else(|| "no bundle folder".into())
}

/// A failing run, to its end: its bundle.
fn failing_bundle(dir: &Path) -> Result<PathBuf, Failed> {
    let run = failing_run(dir).output().map_err(|e| e.to_string())?;
    if run.status.code() != Some(101) {
        return Err(format!(
            "the failing run ended with {}:\n{}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        )
        .into());
    }
    bundle_in(dir)
}

/// A run of the platform with `ignores-version` writes a report.html that
/// a real browser opens: the page's filter, set from the address, shows
/// exactly the two failed cases, with their transcripts; a screenshot of
/// it is made.
fn html_report(browser: &str) -> Result<(), Failed> {
    let dir = scratch("html")?;
    let bundle = failing_bundle(&dir)?;
    let page = bundle.join("report.html");
    let url = format!("file://{}#verdict=failed", page.display());
    let chrome = |extra: &[&str]| {
        std::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1200,1000",
            ])
            .args(extra)
            .arg(&url)
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(|e| e.to_string())
    };
    let dom = String::from_utf8_lossy(&chrome(&["--dump-dom"])?.stdout).into_owned();
    let shot = dir.join("report.png");
    chrome(&[&format!("--screenshot={}", shot.display())])?;
    let png = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    let checks = [
        (
            dom.contains(r#"<span id="shown">2</span>"#),
            "the failed filter shows 2 cases",
        ),
        (
            dom.contains(r#"id="ability::server::validation::wrong-version" data-case="" data-verdict="failed""#),
            "wrong-version is drawn as failed",
        ),
        (dom.contains("<table class=\"chart\">"), "a sequence chart is drawn"),
        (png > 5_000, "the screenshot shows something"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        None => Ok(()),
        Some((_, what)) => Err(format!(
            "in {browser}, not so: {what} (screenshot {png} bytes)\n{}",
            &dom[..dom.len().min(3000)]
        )
        .into()),
    }
}

/// A failing run's `junit.xml` validates against the JUnit schema CI
/// systems read (with libxml2's `xmllint`), and carries the failure and
/// its transcript.
fn junit_validates() -> Result<(), Failed> {
    let dir = scratch("junit")?;
    let bundle = failing_bundle(&dir)?;
    let junit = bundle.join("junit.xml");
    let check = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/report/junit.xsd"))
        .arg(&junit)
        .output()
        .map_err(|e| e.to_string())?;
    let xml = std::fs::read_to_string(&junit).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    if !check.status.success() {
        return Err(format!(
            "junit.xml does not validate: {}",
            String::from_utf8_lossy(&check.stderr)
        )
        .into());
    }
    if !xml.contains("<failure") || !xml.contains("<system-out>") {
        return Err("junit.xml has no failure with its transcript".into());
    }
    Ok(())
}

/// A failing run's `summary.json` validates against its schema and names
/// what ran: the brokers' images, the SUT's version, the run's end.
fn summary_validates() -> Result<(), Failed> {
    let dir = scratch("summary")?;
    let bundle = failing_bundle(&dir)?;
    let read = |p: PathBuf| -> Result<serde_json::Value, Failed> {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()).into())
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = read(root.join("schemas/report/summary.schema.json"))?;
    let summary = read(bundle.join("summary.json"))?;
    let _ = std::fs::remove_dir_all(&dir);
    let validator = jsonschema::validator_for(&schema).map_err(|e| e.to_string())?;
    let mut problems: Vec<String> = validator
        .iter_errors(&summary)
        .map(|e| format!("summary.json: {e}"))
        .collect();
    if summary["status"] != "finished" || summary["ended_unix"].is_null() {
        problems.push(format!("status {} after a whole run", summary["status"]));
    }
    let broker = &summary["brokers"][0];
    if broker["broker"] != "Mosquitto" || broker["image"].is_null() {
        problems.push(format!("the broker is not named: {}", summary["brokers"]));
    }
    if summary["suts"][0]["version"].is_null() {
        problems.push("the reference names no version".to_owned());
    }
    let failed = summary["cases"]
        .as_array()
        .map_or(0, |c| c.iter().filter(|c| c["result"] == "failed").count());
    if failed != 2 {
        problems.push(format!("{failed} failed cases, not 2"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

/// A run cut short leaves a whole bundle that says so: interrupted
/// (SIGINT), every report written and marked incomplete; killed
/// (SIGKILL), the reports written at the start, which say `running`.
/// Either way no container it had begun to create is left.
fn cut_short_says_so() -> Result<(), Failed> {
    let dir = scratch("cut")?;
    let mut problems = Vec::new();
    for (signal, status) in [("INT", "interrupted"), ("KILL", "running")] {
        let _ = std::fs::remove_dir_all(dir.join("reports"));
        let mut child = failing_run(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let began = std::time::Instant::now();
        let summary = loop {
            if let Ok(b) = bundle_in(&dir)
                && b.join("summary.json").exists()
            {
                break b.join("summary.json");
            }
            if began.elapsed() > std::time::Duration::from_secs(60) {
                let _ = child.kill();
                return Err("no summary.json within 60 s of the start".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .map_err(|e| e.to_string())?;
        let _ = child.wait();
        // Whatever the run had begun to start is removed.
        let gone = std::time::Instant::now();
        while containers_of(child.id())? {
            if gone.elapsed() > std::time::Duration::from_secs(30) {
                problems.push(format!("after SIG{signal}: a container is left 30 s later"));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        let text = std::fs::read_to_string(&summary).map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if json["status"] != status {
            problems.push(format!("after SIG{signal}: status {}", json["status"]));
        }
        let bundle = summary.parent().unwrap_or(&dir);
        let page = std::fs::read_to_string(bundle.join("report.html")).unwrap_or_default();
        if !page.contains("id=\"incomplete\"") {
            problems.push(format!(
                "after SIG{signal}: report.html does not say it is incomplete"
            ));
        }
        if !bundle.join("junit.xml").exists() {
            problems.push(format!("after SIG{signal}: no junit.xml"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

/// A SUT that prints its secrets, and the broker's password, where a
/// failure shows its output: none of them may be shown.
fn secrets_never_shown(h: &Harness) -> Result<(), Failed> {
    let secrets = ["tok-5f1c0a", "pw-8e2a91", "sp-77d0b3"];
    let text = format!(
        r#"
        [sut]
        command = ["sh", "-c", "echo \"$API_TOKEN $DB_PASSWORD $SPECIAL $DMCONF_AMQP_URL\"; env; exit 1"]
        env = {{ API_TOKEN = "{}", DB_PASSWORD = "{}", SPECIAL = "{}" }}
        secret_env = ["SPECIAL"]
        "#,
        secrets[0], secrets[1], secrets[2]
    );
    let profile = Profile::parse(&text, Path::new("secrets.toml"))
        .and_then(|p| h.resolve(p))
        .map_err(|e| Failed::from(e.to_string()))?;
    let case = h
        .plan(&profile)
        .into_iter()
        .find(|p| p.name == "dmf::device::registration::thing-created")
        .ok_or("no registration case")?;
    let judged = h.run(&profile, &case);
    let shown = format!(
        "{}\n{}",
        judged.text,
        serde_json::to_string(&judged.verdict).map_err(|e| e.to_string())?
    );
    if !shown.contains("API_TOKEN=***") {
        return Err(format!("the SUT's output is not in the verdict:\n{shown}").into());
    }
    for s in secrets {
        if shown.contains(s) {
            return Err(format!("`{s}` is shown:\n{shown}").into());
        }
    }
    let logins = shown.matches("amqp://dmconf:").count();
    let hidden = shown.matches("amqp://dmconf:***@").count();
    if logins != hidden || logins == 0 {
        return Err(format!("a broker password is shown:\n{shown}").into());
    }
    Ok(())
}

/// Device commands that never connect, one of them deaf to SIGTERM: each
/// case fails within its limit, and stopping the SUT ends its whole
/// process group.
fn hostile_commands(h: &Arc<Harness>, planned: &[Planned]) -> Result<(), Failed> {
    let case = planned
        .iter()
        .find(|p| p.name == "dmf::device::registration::thing-created")
        .cloned()
        .ok_or("no registration case")?;
    for (name, command) in [
        (
            "hangs-before-connecting",
            "echo $$ > {m}; sleep 1000 & sleep 1001",
        ),
        (
            "ignores-sigterm",
            "trap '' TERM; echo $$ > {m}; sleep 1000 & sleep 1001",
        ),
    ] {
        let marker = std::env::temp_dir().join(format!("dmconf-{name}-{}", std::process::id()));
        let command = command.replace("{m}", &marker.display().to_string());
        let text = format!(
            "[sut]\ncommand = [\"sh\", \"-c\", \"{command}\"]\nstop_timeout = \"1s\"\n[timeouts]\ncase = \"3s\"\n"
        );
        let profile = Profile::parse(&text, Path::new("hostile.toml"))
            .and_then(|p| h.resolve(p))
            .map_err(|e| Failed::from(e.to_string()))?;
        let judged = h.run(&profile, &case);
        let group = std::fs::read_to_string(&marker).unwrap_or_default();
        let _ = std::fs::remove_file(&marker);
        let limit =
            std::time::Duration::from_secs(3).mul_f64(1.05) + std::time::Duration::from_secs(2);
        if judged.verdict.failure().is_none() {
            return Err(format!("{name}: the case did not fail").into());
        }
        if judged.verdict.duration > limit {
            return Err(format!("{name}: the case took {:?}", judged.verdict.duration).into());
        }
        let stopped = std::time::Instant::now();
        while group_alive(group.trim()) && stopped.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if group.trim().is_empty() || group_alive(group.trim()) {
            let ps = std::process::Command::new("ps")
                .args(["-o", "pid,ppid,stat,cmd", "-g", group.trim()])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            return Err(format!("{name}: the SUT's process group {group} is left:\n{ps}").into());
        }
        if name == "ignores-sigterm" && !judged.text.contains("ignored SIGTERM and was killed") {
            return Err(format!(
                "{name}: the output does not say it was killed:\n{}",
                judged.text
            )
            .into());
        }
    }
    Ok(())
}

/// The resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The largest this process may grow while hostile SUTs run: 1 GiB.
const RSS_BOUND_KIB: u64 = 1 << 20;

/// Hostile SUTs at once (a 50 MB message, two compression bombs of 64 MiB,
/// a flood): each case fails, and the test process stays under
/// [`RSS_BOUND_KIB`] throughout.
fn bounded_memory(h: &Arc<Harness>, planned: &[Planned]) -> Result<(), Failed> {
    let hostile = [
        (
            "huge-registration",
            "dmf::device::registration::thing-created",
        ),
        (
            "floods-instead-of-registering",
            "dmf::device::registration::thing-created",
        ),
        (
            "sends-gzip-bomb",
            "ability::device::compression::gzip-declared-is-gzip",
        ),
        (
            "sends-deflate-bomb",
            "ability::device::compression::deflate-declared-is-deflate",
        ),
    ];
    let mut runs = Vec::new();
    for (fault, case) in hostile {
        let p = planned
            .iter()
            .find(|p| p.name == case)
            .cloned()
            .ok_or_else(|| format!("no case named {case}"))?;
        let (protocol, role) = protocol_and_role(case);
        let profile = h
            .reference(protocol, role, Some(fault), None)
            .map_err(|e| Failed::from(e.to_string()))?;
        let h = h.clone();
        runs.push((fault, std::thread::spawn(move || h.run(&profile, &p))));
    }
    let mut peak = rss_kib();
    while runs.iter().any(|(_, r)| !r.is_finished()) {
        peak = peak.max(rss_kib());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for (fault, run) in runs {
        let judged = run.join().map_err(|_| "a case panicked")?;
        if judged.verdict.failure().is_none() {
            return Err(format!("the case did not fail against `{fault}`").into());
        }
    }
    if peak > RSS_BOUND_KIB {
        return Err(format!("the test process grew to {peak} KiB").into());
    }
    Ok(())
}

fn main() -> ExitCode {
    if dmconf_harness::reaped() {
        return ExitCode::SUCCESS;
    }
    if let Ok(marker) = std::env::var(VICTIM) {
        return victim(&marker);
    }
    let mut args = Arguments::from_args();
    let root = dmconf_harness::root().expect("a dmconf checkout");
    let harness = match Harness::load(&root, BrokerSpec::default(), dmconf_reference::all()) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            eprintln!("selftest: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let tables = [
        DEVICE_FAULTS,
        SERVER_FAULTS,
        ABILITY_DEVICE_FAULTS,
        ABILITY_CLOUD_FAULTS,
    ];
    let table: Vec<(&str, &str, &str)> = tables.iter().flat_map(|t| t.iter().copied()).collect();
    let clean = harness.references();
    let planned: Vec<Planned> = clean
        .iter()
        .flat_map(|p| {
            harness
                .plan(p)
                .into_iter()
                .filter(move |c| c.suite.role == p.role && c.suite.protocol == p.protocol)
        })
        .collect();
    let mut list = Vec::new();

    let runnable: Vec<String> = planned
        .iter()
        .filter(|p| p.ignored.is_none())
        .map(|p| p.name.clone())
        .collect();
    let rows = table.clone();
    list.push(Trial::test("table::every-case-has-a-fault", move || {
        let missing: Vec<&String> = runnable
            .iter()
            .filter(|n| !rows.iter().any(|(_, c, _)| c == n))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no fault makes these cases fail: {missing:?}").into())
        }
    }));
    let (h, rows) = (harness.clone(), table.clone());
    list.push(Trial::test("table::every-fault-is-used", move || {
        let mut unused = Vec::new();
        for p in h.references() {
            let (faults, _) = h.catalogue(p.protocol, p.role);
            let prefix = format!("{}::{}::", p.protocol, p.role.as_str());
            unused.extend(faults.into_iter().filter(|f| {
                !rows
                    .iter()
                    .any(|(name, case, _)| name == f && case.starts_with(&prefix))
            }));
        }
        if unused.is_empty() {
            Ok(())
        } else {
            Err(format!("faults that no row uses: {unused:?}").into())
        }
    }));

    for (fault_name, case, step) in table {
        let h = harness.clone();
        let p = planned.iter().find(|p| p.name == case).cloned();
        list.push(Trial::test(
            format!("fault::{fault_name}::{case}"),
            move || {
                let p = p.ok_or_else(|| Failed::from(format!("no case named {case}")))?;
                let (protocol, role) = protocol_and_role(case);
                let profile = h
                    .reference(protocol, role, Some(fault_name), None)
                    .map_err(|e| Failed::from(e.to_string()))?;
                let judged = h.run(&profile, &p);
                let Some(f) = judged.verdict.failure() else {
                    return Err(format!(
                        "the case did not fail against a SUT with fault `{fault_name}`:\n{}",
                        judged.text
                    )
                    .into());
                };
                let at = f
                    .step
                    .as_ref()
                    .map(|s| s.name.clone().unwrap_or_else(|| s.kind.to_owned()));
                if at.as_deref() == Some(step) {
                    Ok(())
                } else {
                    Err(format!(
                        "the case failed, but not at step `{step}`:\n{}",
                        judged.text
                    )
                    .into())
                }
            },
        ));
    }

    // Legal behaviours of real implementations (requests of their own,
    // polls, floods of allowed messages): every case of the role passes.
    for profile in harness.references() {
        let (_, variants) = harness.catalogue(profile.protocol, profile.role);
        for variant in variants.into_iter().filter(|v| *v != "floods") {
            let h = harness.clone();
            let cases: Vec<Planned> = planned
                .iter()
                .filter(|p| {
                    p.ignored.is_none()
                        && p.suite.protocol == profile.protocol
                        && p.suite.role == profile.role
                })
                .cloned()
                .collect();
            let (protocol, role) = (profile.protocol, profile.role);
            list.push(Trial::test(
                format!("variant::{variant}::{protocol}::{}", role.as_str()),
                move || {
                    let profile = h
                        .reference(protocol, role, None, Some(variant))
                        .map_err(|e| Failed::from(e.to_string()))?;
                    all_pass(&h, profile, cases)
                },
            ));
        }
    }

    // The servers a profile starts as a command, once for the run: the
    // references run that way must pass every case of their role.
    for (kind, protocol) in [
        ("dmf-server", Protocol::Dmf),
        ("ability-platform", Protocol::Ability),
    ] {
        let h = harness.clone();
        list.push(Trial::test(format!("command::{kind}"), move || {
            let profile = h
                .resolve(command_server(kind)?)
                .map_err(|e| Failed::from(e.to_string()))?;
            // What the command offers (it has no hooks of the in-process
            // reference's) decides which cases apply, as for any profile.
            let cases: Vec<Planned> = h
                .plan(&profile)
                .into_iter()
                .filter(|p| p.suite.protocol == protocol && p.ignored.is_none())
                .collect();
            all_pass(&h, profile, cases)
        }));
    }

    list.push(Trial::test(
        "interrupt::kill-9-leaves-nothing",
        kill_leaves_nothing,
    ));
    let listed = planned.len();
    list.push(Trial::test("binary::list-names-every-case", move || {
        binary_lists(listed)
    }));
    let browser = chromium();
    let absent = browser.is_none();
    list.push(
        Trial::test("report::html-in-a-browser", move || {
            html_report(browser.as_deref().unwrap_or("chromium"))
        })
        .with_ignored_flag(absent),
    );
    // `.ci/run` installs libxml2's xmllint; without it the check shows as
    // ignored.
    let no_xmllint = !std::process::Command::new("xmllint")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    list.push(
        Trial::test("report::junit-validates", junit_validates).with_ignored_flag(no_xmllint),
    );
    list.push(Trial::test("report::summary-validates", summary_validates));
    list.push(Trial::test("report::cut-short-says-so", cut_short_says_so));
    let h = harness.clone();
    list.push(Trial::test("secrets::never-shown", move || {
        secrets_never_shown(&h)
    }));
    let (h, cases) = (harness.clone(), planned.clone());
    list.push(Trial::test("hostile::bounded-memory", move || {
        bounded_memory(&h, &cases)
    }));
    let (h, cases) = (harness.clone(), planned.clone());
    list.push(Trial::test("hostile::commands", move || {
        hostile_commands(&h, &cases)
    }));

    let broken = root.join("fixtures/broken-suites");
    let mut files: Vec<_> = std::fs::read_dir(&broken)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for path in files {
        let h = harness.clone();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        list.push(Trial::test(format!("suite-errors::{name}"), move || {
            broken_suite(&path, &h)
        }));
    }

    dmconf_harness::default_threads(&mut args, 64);
    let conclusion = libtest_mimic::run(&args, list);
    if let Ok(h) = Arc::try_unwrap(harness) {
        h.shutdown();
    }
    if conclusion.has_failed() {
        ExitCode::from(dmconf_harness::EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The file's first line reads `# expect-error: LINE:COLUMN fragment`.
fn broken_suite(path: &Path, harness: &Harness) -> Result<(), Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let header = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect-error: "))
        .ok_or("the first line must be `# expect-error: LINE:COLUMN fragment`")?;
    let (pos, fragment) = header.split_once(' ').ok_or("no fragment")?;
    let Err(errors) = harness.check_suite(&text, "broken.yaml") else {
        return Err("the broken suite parsed without error".into());
    };
    let found = errors.0.iter().any(|e| {
        format!("{}:{}", e.location.line, e.location.column) == pos && e.message.contains(fragment)
    });
    if found {
        Ok(())
    } else {
        Err(format!("expected an error at {pos} containing `{fragment}`, got:\n{errors}").into())
    }
}
