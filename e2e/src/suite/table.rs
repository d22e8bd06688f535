//! The summary table of one or more runs, as `scripts/jepsen.sh` prints it: runs, faults
//! injected by kind, operations by workload, anomalies by checker, acknowledged writes lost, and
//! a last line `<clean runs> passed, <runs with an anomaly> failed`.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::nemesis::Fault;
use super::verdict::{Counts, RunReport};

/// The table over `reports`.
pub fn render(reports: &[RunReport]) -> String {
    let mut faults: BTreeMap<&str, usize> = Fault::ALL.iter().map(|f| (f.name(), 0)).collect();
    let mut ops: BTreeMap<&str, Counts> = BTreeMap::new();
    let mut anomalies: BTreeMap<&str, usize> = BTreeMap::new();
    let mut lost = 0;
    for r in reports {
        for (k, n) in &r.faults {
            *faults.entry(k).or_insert(0) += n;
        }
        for (k, c) in &r.ops {
            let t = ops.entry(k).or_default();
            (t.ok, t.fail, t.info) = (t.ok + c.ok, t.fail + c.fail, t.info + c.info);
        }
        for (k, n) in &r.anomalies {
            *anomalies.entry(k).or_insert(0) += n;
        }
        lost += r.lost;
    }
    let mut out = String::new();
    let _ = writeln!(out, "{:<34} {:>10}", "runs", reports.len());
    let _ = writeln!(out, "faults injected");
    for (k, n) in &faults {
        let _ = writeln!(out, "  {k:<32} {n:>10}");
    }
    let _ = writeln!(out, "operations {:>34} {:>8} {:>8}", "ok", "fail", "info");
    for (k, c) in &ops {
        let _ = writeln!(out, "  {k:<32} {:>10} {:>8} {:>8}", c.ok, c.fail, c.info);
    }
    let _ = writeln!(out, "anomalies");
    if anomalies.is_empty() {
        let _ = writeln!(out, "  {:<32} {:>10}", "(none)", 0);
    }
    for (k, n) in &anomalies {
        let _ = writeln!(out, "  {k:<32} {n:>10}");
    }
    let _ = writeln!(out, "{:<34} {lost:>10}", "acknowledged writes lost");
    for r in reports.iter().filter(|r| !r.is_clean()) {
        let dir = r
            .results_dir
            .as_ref()
            .map_or_else(String::new, |d| format!(" (results: {})", d.display()));
        let _ = writeln!(out, "seed {} failed: {:?}{dir}", r.seed, r.problems);
    }
    let clean = reports.iter().filter(|r| r.is_clean()).count();
    let _ = write!(out, "{clean} passed, {} failed", reports.len() - clean);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_counts_clean_and_failed_runs() {
        let clean = RunReport {
            seed: 1,
            ..RunReport::default()
        };
        let mut bad = RunReport {
            seed: 2,
            lost: 1,
            ..RunReport::default()
        };
        bad.anomalies.insert("elle:G1c".into(), 2);
        let text = render(&[clean, bad]);
        assert!(text.ends_with("1 passed, 1 failed"), "{text}");
        assert!(text.contains("elle:G1c"), "{text}");
        assert!(text.contains("seed 2 failed"), "{text}");
        assert!(text.contains("kill-store"), "{text}");
    }
}
