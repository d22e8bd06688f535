//! `placement`: the placement driver binary. Flags mirror pd-server's; they override the TOML
//! file given with `--config`. Logs go to stderr through `tracing` (`RUST_LOG` or
//! `--log-level`). SIGINT/SIGTERM stop it gracefully.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use placement::Config;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "placement",
    version,
    about = "Placement driver (PD-compatible)"
)]
struct Args {
    /// Member name (default "pd").
    #[arg(long)]
    name: Option<String>,
    /// URL(s) to listen on for clients, e.g. http://127.0.0.1:2379.
    #[arg(long)]
    client_urls: Option<String>,
    /// URL(s) advertised to clients (default: --client-urls).
    #[arg(long)]
    advertise_client_urls: Option<String>,
    /// URL to listen on for the other members' raft traffic (bound with --initial-cluster).
    #[arg(long)]
    peer_urls: Option<String>,
    /// Advertised peer URL(s).
    #[arg(long)]
    advertise_peer_urls: Option<String>,
    /// Data directory (default "default.{name}").
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML config file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log level when RUST_LOG is unset (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// The members starting the group together: name=peer-url,... (as pd-server).
    #[arg(long)]
    initial_cluster: Option<String>,
}

impl Args {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.name {
            config.name = v;
        }
        if let Some(v) = self.client_urls {
            config.client_urls = v;
        }
        if let Some(v) = self.advertise_client_urls {
            config.advertise_client_urls = Some(v);
        }
        if let Some(v) = self.peer_urls {
            config.peer_urls = v;
        }
        if let Some(v) = self.advertise_peer_urls {
            config.advertise_peer_urls = Some(v);
        }
        if let Some(v) = self.data_dir {
            config.data_dir = Some(v);
        }
        if let Some(v) = self.initial_cluster {
            config.initial_cluster = Some(v);
        }
        config.validate()?;
        Ok(config)
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .context("invalid --log-level")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = args.into_config()?;
    placement::run(config, shutdown_signal()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pd.toml");
        std::fs::write(&file, "name = \"from-file\"\nmax-replicas = 1\n").unwrap();
        let args = Args::try_parse_from([
            "placement",
            "--config",
            file.to_str().unwrap(),
            "--client-urls",
            "http://127.0.0.1:12379",
            "--peer-urls",
            "http://127.0.0.1:12380",
        ])
        .unwrap();
        let config = args.into_config().unwrap();
        assert_eq!(config.name, "from-file");
        assert_eq!(config.max_replicas, 1);
        assert_eq!(config.listen_addr().unwrap().port(), 12379);

        let args = Args::try_parse_from([
            "placement",
            "--config",
            file.to_str().unwrap(),
            "--name",
            "cli",
        ])
        .unwrap();
        assert_eq!(args.into_config().unwrap().name, "cli");
    }

    #[test]
    fn bad_config_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pd.toml");
        std::fs::write(&file, "max-replicas = 0\n").unwrap();
        let args = Args::try_parse_from(["placement", "--config", file.to_str().unwrap()]).unwrap();
        let err = args.into_config().unwrap_err().to_string();
        assert!(err.contains("max-replicas"), "{err}");
    }
}
