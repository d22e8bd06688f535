//! `placement-ctl`: parses flags and calls [`placement::ctl::run`]; see that module.

use std::process::ExitCode;

use clap::Parser;
use placement::ctl::{run, Command};

/// Operate a placement (or PD) cluster over its HTTP API.
#[derive(Debug, Parser)]
#[command(name = "placement-ctl", version)]
struct Args {
    /// Placement (PD) address.
    #[arg(
        short = 'u',
        long = "pd",
        default_value = "http://127.0.0.1:2379",
        env = "PD_ADDR"
    )]
    pd: String,
    #[command(subcommand)]
    command: Command,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args.pd, &args.command).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("placement-ctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}
