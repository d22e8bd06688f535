//! `jepsen`: the fault suite's long form. Runs N randomized runs of S seconds each against a
//! fresh cluster (3 placement members, 5 stores, each in its own network namespace), prints a
//! line per run and the summary table; exits non-zero if any run found an anomaly, lost an
//! acknowledged write or could not be judged. `scripts/jepsen.sh` builds and runs it.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use e2e::suite::{self, table, RunConfig};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser, Debug)]
#[command(about = "Randomized fault-injection runs with checked histories")]
struct Args {
    /// Number of runs.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Seconds of faults per run; 0 runs every fault once instead (the CI short form).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seed of the first run (run i uses seed + i); default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Where failing runs leave their results.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("ferrokv-jepsen"))]
    results: PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,e2e::suite=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(reason) = suite::skip_reason() {
        eprintln!("cannot run the fault suite here: {reason}");
        return std::process::ExitCode::from(2);
    }
    let first = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let mut reports = Vec::new();
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("cannot listen for signals");
        return std::process::ExitCode::from(2);
    };
    for i in 0..args.runs {
        let config = RunConfig {
            seed: first.wrapping_add(i),
            seconds: (args.seconds > 0).then_some(args.seconds),
            results: args.results.clone(),
            reproducer: format!(
                "scripts/jepsen.sh --runs 1 --seconds {} --seed {{seed}}",
                args.seconds
            ),
            client_crashes: true,
        };
        // A signal drops the run, and with it the cluster: its processes, namespaces and bridge.
        let result = tokio::select! {
            result = suite::run(&config) => result,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        };
        let report = match result {
            Ok(report) => report,
            Err(e) => suite::RunReport::unjudged(config.seed, e),
        };
        println!(
            "run {}/{} seed {}: {} ({} faults, {} ops)",
            i + 1,
            args.runs,
            report.seed,
            if report.is_clean() { "clean" } else { "FAILED" },
            report.faults.values().sum::<usize>(),
            report
                .ops
                .values()
                .map(|c| c.ok + c.fail + c.info)
                .sum::<usize>(),
        );
        reports.push(report);
    }
    if reports.len() as u64 != args.runs {
        eprintln!("stopped by a signal after {} runs", reports.len());
    }
    println!("{}", table::render(&reports));
    if reports.iter().all(suite::RunReport::is_clean) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
