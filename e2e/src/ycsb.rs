//! go-ycsb (`github.com/pingcap/go-ycsb`, the tool TiKV publishes its figures with): built once
//! from the module proxy through the wrapper module `e2e/ycsb` ([`build`], cached like the other
//! foreign clients), run one phase at a time ([`command`]), and its final per-operation summary
//! lines read back ([`parse_summary`], [`Totals`]). Used by the correctness suite
//! (`tests/ycsb.rs`) and by the side-by-side benchmark (`bench-compare`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::error::{Error, Result};
use crate::foreign::{cached_build, must_succeed, run_bounded};

/// Bound on building go-ycsb (client-go and its dependencies compile for minutes).
pub const BUILD_LIMIT: Duration = Duration::from_secs(2400);
/// The workloads copied next to the binary.
pub const WORKLOADS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// go-ycsb's directory (the `go-ycsb` binary and its `workloads`), built first if the cache
/// holds none for the current wrapper module.
pub async fn build() -> Result<PathBuf> {
    let dir = cached_build("ycsb", "go-ycsb", |dir, out| async move {
        std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
        let mut go = Command::new("go");
        go.current_dir(&dir)
            .args(["build", "-o"])
            .arg(out.join("go-ycsb"))
            .arg("github.com/pingcap/go-ycsb/cmd/go-ycsb");
        must_succeed("go build go-ycsb (e2e/ycsb)", go, BUILD_LIMIT).await?;
        let mut list = Command::new("go");
        list.current_dir(&dir)
            .args(["list", "-m", "-f", "{{.Dir}}", "github.com/pingcap/go-ycsb"]);
        let module = run_bounded("go list -m go-ycsb", list, Duration::from_secs(120)).await?;
        let module = PathBuf::from(String::from_utf8_lossy(&module.stdout).trim());
        copy_workloads(&module.join("workloads"), &out.join("workloads"))
    })
    .await?;
    Ok(dir)
}

fn copy_workloads(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for w in WORKLOADS {
        let name = format!("workload{w}");
        std::fs::copy(from.join(&name), to.join(&name)).map_err(|e| Error::io(from, e))?;
    }
    Ok(())
}

/// `go-ycsb <phase> <driver> -P workloads/workload<w>` with `-p` for each of `props`.
pub fn command(dir: &Path, phase: &str, driver: &str, workload: &str, props: &[String]) -> Command {
    let mut cmd = Command::new(dir.join("go-ycsb"));
    cmd.arg(phase)
        .arg(driver)
        .arg("-P")
        .arg(dir.join("workloads").join(format!("workload{workload}")));
    for p in props {
        cmd.args(["-p", p]);
    }
    cmd
}

/// One operation kind's final summary line:
/// `READ   - Takes(s): 10.0, Count: 9987, OPS: 998.6, Avg(us): ..., 99th(us): ...`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OpStats {
    /// `READ`, `UPDATE`, `INSERT`, `SCAN`, `READ_MODIFY_WRITE`, `<OP>_ERROR`, `TOTAL`...
    pub op: String,
    pub takes_s: f64,
    pub count: u64,
    pub ops: f64,
    pub avg_us: f64,
    pub p99_us: f64,
}

/// The last summary line of each operation kind in go-ycsb's output, in first-seen order.
pub fn parse_summary(text: &str) -> Vec<OpStats> {
    let mut out: Vec<OpStats> = Vec::new();
    for line in text.lines() {
        let Some((op, rest)) = line.split_once(" - Takes(s):") else {
            continue;
        };
        let field = |name: &str| -> Option<f64> {
            let at = rest.find(&format!("{name}: "))? + name.len() + 2;
            let value: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            value.parse().ok()
        };
        let takes: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let stats = OpStats {
            op: op.trim().to_owned(),
            takes_s: takes.parse().unwrap_or(0.0),
            count: field("Count").unwrap_or(0.0) as u64,
            ops: field("OPS").unwrap_or(0.0),
            avg_us: field("Avg(us)").unwrap_or(0.0),
            p99_us: field("99th(us)").unwrap_or(0.0),
        };
        match out.iter_mut().find(|s| s.op == stats.op) {
            Some(old) => *old = stats,
            None => out.push(stats),
        }
    }
    out
}

/// A phase's operations together: all kinds but errors (and go-ycsb's own `TOTAL` line).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    pub count: u64,
    /// Operations per second over the phase (count / longest `Takes(s)`).
    pub ops_per_sec: f64,
    /// The worst 99th percentile among the kinds.
    pub p99_us: f64,
    /// Failed operations (`<OP>_ERROR` lines).
    pub errors: u64,
}

impl Totals {
    pub fn of(stats: &[OpStats]) -> Totals {
        let ok: Vec<&OpStats> = stats
            .iter()
            .filter(|s| !s.op.ends_with("_ERROR") && s.op != "TOTAL")
            .collect();
        let count: u64 = ok.iter().map(|s| s.count).sum();
        let secs = ok.iter().map(|s| s.takes_s).fold(0.0, f64::max);
        Totals {
            count,
            ops_per_sec: if secs > 0.0 { count as f64 / secs } else { 0.0 },
            p99_us: ok.iter().map(|s| s.p99_us).fold(0.0, f64::max),
            errors: stats
                .iter()
                .filter(|s| s.op.ends_with("_ERROR"))
                .map(|s| s.count)
                .sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "\
READ   - Takes(s): 9.9, Count: 100, OPS: 10.1, Avg(us): 900, Min(us): 400, Max(us): 3000, 50th(us): 800, 90th(us): 1200, 95th(us): 1500, 99th(us): 2000, 99.9th(us): 2900, 99.99th(us): 3000
Run finished, takes 10.0s
READ   - Takes(s): 10.0, Count: 300, OPS: 30.0, Avg(us): 1000, Min(us): 400, Max(us): 9000, 50th(us): 800, 90th(us): 1200, 95th(us): 1500, 99th(us): 2500, 99.9th(us): 8000, 99.99th(us): 9000
UPDATE - Takes(s): 8.0, Count: 100, OPS: 12.5, Avg(us): 2000, Min(us): 900, Max(us): 9900, 50th(us): 1800, 90th(us): 2500, 95th(us): 3000, 99th(us): 7000, 99.9th(us): 9000, 99.99th(us): 9900
UPDATE_ERROR - Takes(s): 8.0, Count: 3, OPS: 0.4, Avg(us): 2000, Min(us): 900, Max(us): 9900, 50th(us): 1800, 90th(us): 2500, 95th(us): 3000, 99th(us): 7000, 99.9th(us): 9000, 99.99th(us): 9900
";

    #[test]
    fn summaries_keep_the_last_line_of_each_kind() {
        let stats = parse_summary(OUT);
        let ops: Vec<&str> = stats.iter().map(|s| s.op.as_str()).collect();
        assert_eq!(ops, ["READ", "UPDATE", "UPDATE_ERROR"]);
        assert_eq!(stats[0].count, 300);
        assert_eq!(stats[0].p99_us, 2500.0);
        assert_eq!(stats[1].takes_s, 8.0);
        let t = Totals::of(&stats);
        assert_eq!((t.count, t.errors), (400, 3));
        assert_eq!(t.ops_per_sec, 40.0);
        assert_eq!(t.p99_us, 7000.0);
        assert_eq!(Totals::of(&[]), Totals::default());
    }
}
