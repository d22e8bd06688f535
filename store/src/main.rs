//! `store`: the storage node binary. Parses flags, loads config, runs.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use store::config::{parse_labels, parse_size, Config};

#[derive(Parser, Debug)]
#[command(name = "store", about = "TiKV-compatible storage node", version)]
struct Args {
    /// TOML config file; flags override its values.
    #[arg(long, short = 'C')]
    config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long)]
    addr: Option<String>,
    /// Address advertised to clients and placement.
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Status HTTP address (/metrics, /health).
    #[arg(long)]
    status_addr: Option<String>,
    /// Data directory.
    #[arg(long, short = 's')]
    data_dir: Option<PathBuf>,
    /// Placement endpoints, comma separated.
    #[arg(long, alias = "pd", value_delimiter = ',')]
    pd_endpoints: Option<Vec<String>>,
    /// Location labels, e.g. zone=z1,host=h1.
    #[arg(long)]
    labels: Option<String>,
    /// Capacity reported to placement (`raftstore.capacity`), e.g. `10GB` or `10Gi`; at most
    /// the file system's size.
    #[arg(long)]
    capacity: Option<String>,
    /// Log filter (overridden by RUST_LOG).
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = &args.addr {
        cfg.addr = v.clone();
    }
    if let Some(v) = &args.advertise_addr {
        cfg.advertise_addr = v.clone();
    }
    if let Some(v) = &args.status_addr {
        cfg.status_addr = v.clone();
    }
    if let Some(v) = &args.data_dir {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = &args.pd_endpoints {
        cfg.pd_endpoints = v.clone();
    }
    if let Some(v) = &args.labels {
        cfg.labels = parse_labels(v)?;
    }
    if let Some(v) = &args.capacity {
        cfg.raftstore.capacity = parse_size(v)?;
    }
    cfg.validate()?;
    Ok(cfg)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let cfg = load_config(&args).context("loading configuration")?;
    let running = store::server::start(cfg).await.context("starting store")?;
    tracing::info!(store_id = running.store_id, addr = %running.addr, status = %running.status_addr, "store ready");
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
