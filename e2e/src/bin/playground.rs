//! `playground`: one placement and N stores on the default ports, until Ctrl-C.
//!
//! Parses flags, installs logging and calls [`e2e::playground::run`]; see that module.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use e2e::playground::{run, PlaygroundOptions};

/// Start a local cluster (placement members and N stores) for trying the TiKV clients.
#[derive(Debug, Parser)]
#[command(name = "playground", version)]
struct Args {
    /// Number of stores.
    #[arg(long, default_value_t = 3)]
    stores: usize,
    /// Number of placement members; 3 makes a highly available group (member i on client
    /// port pd-port + 2i, peer port pd-port + 2i + 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=7))]
    placements: u16,
    /// Directory for data, configs and logs (reused on restart).
    #[arg(long, default_value = "./playground-data")]
    dir: PathBuf,
    /// Placement client port (PD gRPC and HTTP).
    #[arg(long, default_value_t = 2379)]
    pd_port: u16,
    /// Port of store 0; store i uses this plus i.
    #[arg(long, default_value_t = 20160)]
    store_port: u16,
    /// Status port of store 0; store i uses this plus i.
    #[arg(long, default_value_t = 20180)]
    status_port: u16,
    /// Spread stores round-robin over this many zones (labels `zone=zone-N,host=host-M`, and
    /// placement's location-labels `zone,host`); 0 = no labels.
    #[arg(long, default_value_t = 0)]
    zones: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let opts = PlaygroundOptions {
        stores: args.stores,
        placements: usize::from(args.placements),
        dir: args.dir,
        pd_port: args.pd_port,
        store_port: args.store_port,
        status_port: args.status_port,
        zones: args.zones,
        ..PlaygroundOptions::default()
    };
    match run(opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("playground: {err}");
            ExitCode::FAILURE
        }
    }
}
