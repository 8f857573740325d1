//! Named checks: the Rust steps a suite calls with `check`. One function
//! per check; [`NAMES`] is the registry the parser validates against.

use serde_json::Value;

use super::case::CaseRun;
use crate::protocol::dmf::{self, Flow};

/// Every check a suite may call.
pub const NAMES: [&str; 3] = [
    "dmf.action_lifecycle",
    "amqp.exchange_exists",
    "amqp.exchange_is",
];

/// Runs the check `name`; `Err` says what was wrong.
pub async fn run(
    name: &str,
    args: &serde_json::Map<String, Value>,
    run: &mut CaseRun<'_>,
) -> Result<(), String> {
    let arg = |k: &str| -> Result<&Value, String> {
        args.get(k)
            .ok_or_else(|| format!("check `{name}` needs the argument `{k}`"))
    };
    let text = |k: &str| -> Result<String, String> {
        arg(k)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("argument `{k}` of `{name}` must be text"))
    };
    match name {
        "dmf.action_lifecycle" => {
            let flow_name = text("flow")?;
            let flow = Flow::parse(&flow_name).ok_or_else(|| {
                format!("unknown flow `{flow_name}`; use download_and_install or download")
            })?;
            let from = text("messages")?;
            let messages = run
                .collected(&from)
                .ok_or_else(|| format!("no `collect` step stored messages into `{from}`"))?;
            dmf::check_lifecycle(flow, messages)
        }
        "amqp.exchange_exists" => {
            let exchange = text("exchange")?;
            match run.link().exchange_exists(&exchange).await? {
                true => Ok(()),
                false => Err(format!(
                    "the exchange `{exchange}` does not exist on the broker: the SUT named it but did not declare it"
                )),
            }
        }
        "amqp.exchange_is" => {
            let exchange = text("exchange")?;
            let kind = text("type")?;
            let durable = arg("durable")?
                .as_bool()
                .ok_or_else(|| format!("argument `durable` of `{name}` must be true or false"))?;
            run.link().exchange_is(&exchange, &kind, durable).await
        }
        other => Err(format!("unknown check `{other}`")),
    }
}
