//! The self-test: proves that the suites can fail. Each row of the fault
//! table starts the reference device with one realistic mistake and runs
//! one case against it; the row passes only if the case fails, at the
//! step the row names. Two more checks keep the table honest: every case
//! has a row, and every fault of the catalogue is used. Broken suite files
//! under `fixtures/broken-suites/` must be reported at the line and column
//! their first line announces.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use dmconf_harness::broker;
use dmconf_harness::profile::{BrokerSpec, Profile};
use dmconf_harness::reference::dmf_device::DeviceFault;
use dmconf_harness::schema::SchemaStore;
use dmconf_harness::suite::{self, Context};
use dmconf_harness::trials::{self, Harness, Paths};
use libtest_mimic::{Arguments, Failed, Trial};

/// Fault, case, and the step that must fail (its name, or its kind when
/// it has none).
const FAULT_TABLE: &[(&str, &str, &str)] = &[
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
        "double-install",
        "dmf::device::idempotency::duplicate-while-running",
        "expect_none",
    ),
    (
        "double-install",
        "dmf::device::idempotency::duplicate-after-finished",
        "expect_none",
    ),
    (
        "double-install",
        "dmf::device::idempotency::reregistration",
        "expect_none",
    ),
];

fn main() -> ExitCode {
    if let Ok(spec) = std::env::var(broker::REAPER_ENV) {
        broker::reap(&spec);
        return ExitCode::SUCCESS;
    }
    let mut args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let harness = match Harness::load(Paths::under(root), BrokerSpec::default()) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            eprintln!("selftest: cannot load the suites: {e:?}");
            return ExitCode::from(trials::EXIT_BROKEN_SUITE);
        }
    };
    let clean = Profile::reference_device(None);
    let planned = harness.plan(&clean);
    let mut list = Vec::new();

    let runnable: Vec<String> = planned
        .iter()
        .filter(|p| p.ignored.is_none())
        .map(|p| p.name.clone())
        .collect();
    let names = runnable.clone();
    list.push(Trial::test("table::every-case-has-a-fault", move || {
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !FAULT_TABLE.iter().any(|(_, c, _)| c == n))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no fault makes these cases fail: {missing:?}").into())
        }
    }));
    list.push(Trial::test("table::every-fault-is-used", || {
        let unused: Vec<&str> = DeviceFault::ALL
            .iter()
            .map(|f| f.name())
            .filter(|n| !FAULT_TABLE.iter().any(|(f, _, _)| f == n))
            .collect();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(format!("faults that no row uses: {unused:?}").into())
        }
    }));

    for &(fault_name, case, step) in FAULT_TABLE {
        let h = harness.clone();
        let p = planned.iter().find(|p| p.name == case).cloned();
        let fault = DeviceFault::from_name(fault_name);
        list.push(Trial::test(
            format!("fault::{fault_name}::{case}"),
            move || {
                let p = p.ok_or_else(|| Failed::from(format!("no case named {case}")))?;
                let fault =
                    fault.ok_or_else(|| Failed::from(format!("no fault named {fault_name}")))?;
                let profile = Profile::reference_device(Some(fault));
                let verdict = h.run(&profile, &p).map_err(Failed::from)?;
                let Some(f) = &verdict.failure else {
                    return Err(format!(
                        "the case passed against a device with fault `{fault_name}`"
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
                        trials::failure_text(&p, &verdict)
                    )
                    .into())
                }
            },
        ));
    }

    let broken = root.join("fixtures/broken-suites");
    let mut files: Vec<_> = std::fs::read_dir(&broken)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let schemas = Arc::new(SchemaStore::load(&root.join("schemas")).expect("schemas load"));
    for path in files {
        let schemas = schemas.clone();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        list.push(Trial::test(format!("suite-errors::{name}"), move || {
            broken_suite(&path, &schemas)
        }));
    }

    trials::default_threads(&mut args, 64);
    let conclusion = libtest_mimic::run(&args, list);
    if let Ok(h) = Arc::try_unwrap(harness) {
        h.shutdown();
    }
    if conclusion.has_failed() {
        ExitCode::from(trials::EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The file's first line reads `# expect-error: LINE:COLUMN fragment`.
fn broken_suite(path: &Path, schemas: &SchemaStore) -> Result<(), Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let header = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect-error: "))
        .ok_or("the first line must be `# expect-error: LINE:COLUMN fragment`")?;
    let (pos, fragment) = header.split_once(' ').ok_or("no fragment")?;
    let checks = dmconf_harness::run::check::NAMES;
    let cx = Context {
        schemas,
        checks: &checks,
    };
    let Err(errors) = suite::parse(&text, "broken.yaml", &cx) else {
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
