//! Judging a run: every checker over its history, one [`RunReport`], and the results directory
//! a failing run leaves behind (histories, nemesis schedule and events, reports, every process's
//! log and a one-line reproducer).

use std::collections::BTreeMap;
use std::path::PathBuf;

use jepsen::checks::{
    check_bank, check_lost_appends, check_lost_writes, check_monotonic, Monotonicity,
};
use jepsen::porcupine::{self, Verdict};
use jepsen::results::ResultsDir;
use jepsen::Outcome;
use serde::Serialize;

use super::bank::TOTAL;
use super::nemesis::{Schedule, Struck};
use super::workloads::Histories;
use super::RunConfig;
use crate::cluster::Cluster;

/// How many operations ended each way.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

impl Counts {
    fn of(outcomes: impl Iterator<Item = Outcome>) -> Counts {
        let mut c = Counts::default();
        for o in outcomes {
            match o {
                Outcome::Ok => c.ok += 1,
                Outcome::Fail => c.fail += 1,
                Outcome::Info => c.info += 1,
            }
        }
        c
    }
}

/// What a run did and found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    pub seed: u64,
    /// Faults injected, by kind (those that could not be injected are not counted).
    pub faults: BTreeMap<&'static str, usize>,
    /// Operations by workload.
    pub ops: BTreeMap<&'static str, Counts>,
    /// Anomalies by `checker:name`.
    pub anomalies: BTreeMap<String, usize>,
    /// Acknowledged writes (raw puts and list appends) missing from the final reads.
    pub lost: usize,
    /// Checks that could not run, and why (Porcupine without Go).
    pub skipped: Vec<String>,
    /// What kept the run from being judged fully (the cluster did not recover, a final read
    /// failed, a process crashed).
    pub problems: Vec<String>,
    pub results_dir: Option<PathBuf>,
}

impl RunReport {
    pub fn is_clean(&self) -> bool {
        self.anomalies.is_empty() && self.lost == 0 && self.problems.is_empty()
    }

    /// A run that could not be judged (the cluster did not start, ...).
    pub fn unjudged(seed: u64, problem: String) -> RunReport {
        RunReport {
            seed,
            problems: vec![problem],
            ..RunReport::default()
        }
    }

    fn anomaly(&mut self, name: String, n: usize) {
        if n > 0 {
            *self.anomalies.entry(name).or_insert(0) += n;
        }
    }
}

/// Runs every checker.
pub fn judge(config: &RunConfig, struck: &[Struck], h: &Histories) -> RunReport {
    let mut r = RunReport {
        seed: config.seed,
        problems: h.problems.clone(),
        ..RunReport::default()
    };
    for s in struck
        .iter()
        .filter(|s| !s.what.starts_with("not injected"))
    {
        *r.faults.entry(s.fault.name()).or_insert(0) += 1;
    }
    r.ops
        .insert("register", Counts::of(h.register.iter().map(|o| o.outcome)));
    r.ops.insert(
        "list-append",
        Counts::of(h.append.iter().map(|o| o.outcome)),
    );
    let ok = |n: usize| Counts {
        ok: n,
        ..Counts::default()
    };
    r.ops.insert("bank-read", ok(h.bank_reads.len()));
    r.ops.insert("bank-transfer", ok(h.transfers));
    r.ops.insert("tso", ok(h.tso.len()));
    r.ops.insert(
        "lost-writes",
        Counts {
            ok: h.acked_writes.len(),
            info: h.unacked_writes,
            ..Counts::default()
        },
    );
    check_register(&mut r, h);
    check_append(&mut r, h);
    let bank = check_bank(TOTAL, &h.bank_reads);
    r.anomaly("bank:violation".into(), bank.violations.len());
    let tso = check_monotonic(&h.tso, Monotonicity::Strict);
    r.anomaly("monotonic:tso".into(), tso.violations.len());
    let commits = check_monotonic(&h.commit_ts, Monotonicity::NonDecreasing);
    r.anomaly("monotonic:commit-ts".into(), commits.violations.len());
    if let Some(found) = &h.final_writes {
        match check_lost_writes(&h.acked_writes, found) {
            Ok(report) => r.lost += report.lost.len(),
            Err(e) => r.problems.push(e.to_string()),
        }
    }
    r
}

fn check_register(r: &mut RunReport, h: &Histories) {
    let dir = match tempfile::Builder::new().prefix("jr-porcupine-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return r.problems.push(format!("porcupine scratch dir: {e}")),
    };
    match porcupine::check_ops(&h.register, dir.path(), false) {
        Ok(Verdict::Linearizable(_)) => {}
        Ok(Verdict::NotLinearizable(s)) => {
            r.anomaly(
                "porcupine:not-linearizable".into(),
                s.failed_keys.len().max(1),
            );
        }
        Ok(Verdict::Unknown(s)) => r
            .problems
            .push(format!("porcupine timed out on keys {:?}", s.unknown_keys)),
        Ok(Verdict::Skipped(why)) => r.skipped.push(format!("porcupine: {why}")),
        Err(e) => r.problems.push(format!("porcupine: {e}")),
    }
}

fn check_append(r: &mut RunReport, h: &Histories) {
    match jepsen::elle::check(&h.append) {
        Ok(report) => {
            for anomaly in report.anomalies.iter().filter(|a| a.forbidden_under_si()) {
                r.anomaly(format!("elle:{}", anomaly.name()), 1);
            }
        }
        Err(e) => r.problems.push(format!("elle: {e}")),
    }
    if let Some(lists) = &h.final_lists {
        r.lost += check_lost_appends(&h.append, lists).lost.len();
    }
}

/// Writes a failing run's results under `config.results`; returns the directory.
pub fn keep_results(
    config: &RunConfig,
    cluster: &Cluster,
    report: &RunReport,
    schedule: &Schedule,
    struck: &[Struck],
    h: &Histories,
) -> Result<PathBuf, String> {
    let e = |e: jepsen::Error| e.to_string();
    let dir = ResultsDir::create(&config.results, &format!("seed-{}", config.seed)).map_err(e)?;
    dir.write_history("register", &h.register).map_err(e)?;
    dir.write_history("list-append", &h.append).map_err(e)?;
    dir.write_history("tso", &h.tso).map_err(e)?;
    dir.write_history("commit-ts", &h.commit_ts).map_err(e)?;
    dir.write_history("bank-reads", &h.bank_reads).map_err(e)?;
    dir.write_json("final-lists", &h.final_lists).map_err(e)?;
    dir.write_json("schedule", schedule).map_err(e)?;
    dir.write_json("nemesis", &struck).map_err(e)?;
    dir.write_json("report", report).map_err(e)?;
    for (name, log) in cluster.log_files() {
        dir.copy_log(&name, &log).map_err(e)?;
    }
    dir.write_reproducer(config.seed, &config.reproducer)
        .map_err(e)?;
    Ok(dir.path().to_path_buf())
}
