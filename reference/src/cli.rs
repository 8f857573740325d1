//! `dmconf-reference`: runs a reference implementation on its own, as a server a profile can
//! name as a command: the reference DMF server (with its Management API)
//! or the reference Device API platform. It reads the environment dmconf
//! gives a server command and prints `ready` once it serves.
//!
//! ```text
//! dmconf-reference dmf-server [--mgmt-port N] [--receiver-queue Q] [--fault NAME]
//! dmconf-reference ability-platform [--device-prefix P] [--fault NAME]
//! ```

use std::process::ExitCode;

use crate::Fault;
use crate::ability_cloud::{self, CloudConfig, CloudFault};
use crate::dmf_server::{self, ServerConfig, ServerFault};
use dmconf_harness::kit::ability::Limits;
use dmconf_harness::kit::{self, Endpoint};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn fault<F: Fault>(name: Option<&String>) -> Result<Option<F>, String> {
    F::named(name.map(String::as_str))
}

/// Waits for SIGTERM (what dmconf sends a command) or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run(args: Vec<String>) -> Result<(), String> {
    let opt = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    match args.first().map(String::as_str) {
        Some("dmf-server") => {
            let cfg = ServerConfig {
                amqp_url: env(kit::AMQP_URL)?,
                tenant: env(kit::TENANT).unwrap_or_else(|_| "DEFAULT".into()),
                exchange: env(kit::DMF_EXCHANGE).unwrap_or_else(|_| "dmf.exchange".into()),
                receiver_queue: opt("--receiver-queue")
                    .cloned()
                    .unwrap_or_else(|| "dmf_receiver".into()),
                private: false,
                mgmt_port: opt("--mgmt-port")
                    .map(|p| p.parse().map_err(|_| format!("bad port `{p}`")))
                    .transpose()?
                    .unwrap_or(0),
                fault: fault::<ServerFault>(opt("--fault"))?,
            };
            let server = dmf_server::start(cfg).await?;
            println!("ready; management API at {}", server.mgmt_url);
            stopped().await;
            server.stop().await;
            Ok(())
        }
        Some("ability-platform") => {
            let ca = std::env::var(kit::MQTT_CA)
                .ok()
                .map(|f| std::fs::read_to_string(&f).map_err(|e| format!("{f}: {e}")))
                .transpose()?;
            let cfg = CloudConfig {
                service: Endpoint::parse(&env(kit::MQTT_URL)?, ca)?,
                serves: ability_cloud::Serves::Prefix(
                    opt("--device-prefix").cloned().unwrap_or_default(),
                ),
                limits: Limits::default(),
                fault: fault::<CloudFault>(opt("--fault"))?,
            };
            let platform = ability_cloud::start(cfg).await?;
            println!("ready");
            stopped().await;
            platform.stop().await;
            Ok(())
        }
        _ => Err("usage: dmconf-reference dmf-server [--mgmt-port N] [--receiver-queue Q] [--fault NAME] | ability-platform [--device-prefix P] [--fault NAME]".into()),
    }
}

/// The command line: runs a reference server until SIGTERM.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dmconf-reference: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmconf-reference: {e}");
            ExitCode::FAILURE
        }
    }
}
