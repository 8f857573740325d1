//! DMF's named checks, the Rust steps a suite calls with `check`: the
//! action-lifecycle oracle, and two questions to the broker about an
//! exchange. [`NAMES`] is what the parser validates a `check` against.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::message::Message;
use crate::protocol::CheckCx;
use crate::transport::TransportError;

/// Every check a DMF suite may call.
pub(crate) const NAMES: [&str; 3] = [
    "dmf.action_lifecycle",
    "amqp.exchange_exists",
    "amqp.exchange_is",
];

/// Runs the check `name`: `Ok(Err(why))` when the SUT fails it, `Err`
/// when the broker did not answer.
pub(crate) async fn run(
    name: &str,
    args: &Map<String, Value>,
    cx: CheckCx<'_>,
) -> Result<Result<(), String>, Error> {
    match judge(name, args, cx).await {
        Err(Judged::Harness(e)) => Err(e.into()),
        Err(Judged::Failed(why)) => Ok(Err(why)),
        Ok(()) => Ok(Ok(())),
    }
}

/// Why a check did not pass.
enum Judged {
    Failed(String),
    Harness(TransportError),
}

impl From<String> for Judged {
    fn from(why: String) -> Self {
        Judged::Failed(why)
    }
}

impl From<TransportError> for Judged {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Refused(why) => Judged::Failed(why),
            e => Judged::Harness(e),
        }
    }
}

async fn judge(name: &str, args: &Map<String, Value>, cx: CheckCx<'_>) -> Result<(), Judged> {
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
    let amqp = || {
        cx.link
            .amqp()
            .ok_or_else(|| format!("check `{name}` needs an AMQP broker"))
    };
    match name {
        "dmf.action_lifecycle" => {
            let flow_name = text("flow")?;
            let flow = Flow::parse(&flow_name).ok_or_else(|| {
                format!("unknown flow `{flow_name}`; use download_and_install or download")
            })?;
            let from = text("messages")?;
            let messages = cx
                .collected
                .get(&from)
                .ok_or_else(|| format!("no `collect` step stored messages into `{from}`"))?;
            Ok(check_lifecycle(flow, messages)?)
        }
        "amqp.exchange_exists" => {
            let exchange = text("exchange")?;
            if amqp()?.exchange_exists(&exchange).await? {
                Ok(())
            } else {
                Err(Judged::Failed(format!(
                    "the exchange `{exchange}` does not exist on the broker: the SUT named it but did not declare it"
                )))
            }
        }
        "amqp.exchange_is" => {
            let exchange = text("exchange")?;
            let kind = text("type")?;
            let durable = arg("durable")?
                .as_bool()
                .ok_or_else(|| format!("argument `durable` of `{name}` must be true or false"))?;
            let client = amqp()?;
            if !client.exchange_exists(&exchange).await? {
                return Err(Judged::Failed(format!(
                    "the exchange `{exchange}` does not exist on the broker"
                )));
            }
            Ok(client.exchange_is(&exchange, &kind, durable).await?)
        }
        other => Err(Judged::Failed(format!("unknown check `{other}`"))),
    }
}

/// Which action flow a lifecycle check judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// DOWNLOAD_AND_INSTALL: ends in FINISHED or ERROR.
    DownloadAndInstall,
    /// DOWNLOAD (download only): ends in DOWNLOADED or ERROR.
    Download,
}

impl Flow {
    /// Parses the suite's name for a flow.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "download_and_install" => Some(Flow::DownloadAndInstall),
            "download" => Some(Flow::Download),
            _ => None,
        }
    }

    fn intermediate(self) -> &'static [&'static str] {
        match self {
            Flow::DownloadAndInstall => {
                &["DOWNLOAD", "RETRIEVED", "RUNNING", "WARNING", "DOWNLOADED"]
            }
            Flow::Download => &["DOWNLOAD", "RETRIEVED", "RUNNING", "WARNING"],
        }
    }

    fn finals(self) -> &'static [&'static str] {
        match self {
            Flow::DownloadAndInstall => &["FINISHED", "ERROR"],
            Flow::Download => &["DOWNLOADED", "ERROR"],
        }
    }
}

/// Judges the statuses a device reported for one action: each is one the
/// flow allows, and exactly one final status closes the sequence.
pub(crate) fn check_lifecycle(flow: Flow, statuses: &[Message]) -> Result<(), String> {
    let names: Vec<String> = statuses
        .iter()
        .map(|m| {
            m.body_json()
                .and_then(|b| {
                    b.get("actionStatus")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "<no actionStatus>".to_owned())
        })
        .collect();
    let seq = names.join(" -> ");
    if names.is_empty() {
        return Err("no status was reported".to_owned());
    }
    for (i, s) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let is_final = flow.finals().contains(&s.as_str());
        if is_final && !last {
            return Err(format!(
                "final status {s} is followed by more statuses: {seq}"
            ));
        }
        if last && !is_final {
            return Err(format!(
                "the sequence must end in one of {:?}, got: {seq}",
                flow.finals()
            ));
        }
        if !is_final && !flow.intermediate().contains(&s.as_str()) {
            return Err(format!(
                "status {s} does not belong in this flow (allowed before the end: {:?}); sequence: {seq}",
                flow.intermediate()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: &str) -> Message {
        Message {
            body: format!(r#"{{"actionId":1,"actionStatus":"{s}"}}"#).into_bytes(),
            ..Default::default()
        }
    }

    #[test]
    fn lifecycle_oracle() {
        let seq = |v: &[&str]| v.iter().map(|s| status(s)).collect::<Vec<_>>();
        let dai = Flow::DownloadAndInstall;
        assert!(
            check_lifecycle(
                dai,
                &seq(&["RUNNING", "DOWNLOAD", "DOWNLOADED", "FINISHED"])
            )
            .is_ok()
        );
        assert!(check_lifecycle(dai, &seq(&["ERROR"])).is_ok());
        assert!(check_lifecycle(dai, &seq(&["RUNNING", "CANCELED"])).is_err());
        assert!(check_lifecycle(dai, &seq(&["FINISHED", "FINISHED"])).is_err());
        assert!(check_lifecycle(Flow::Download, &seq(&["DOWNLOAD", "DOWNLOADED"])).is_ok());
        assert!(check_lifecycle(Flow::Download, &seq(&["DOWNLOAD", "FINISHED"])).is_err());
    }
}
