//! `operator`: parses flags, sets up logging and calls [`operator::cli::run`].

use clap::Parser;
use operator::cli::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_format == "json" {
        fmt.json().init();
    } else {
        fmt.init();
    }
    operator::cli::run(args).await
}
