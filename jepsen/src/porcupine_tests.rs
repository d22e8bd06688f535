//! Tests of the Porcupine wrapper against the real Go program (each prints `SKIPPED: <reason>`
//! and passes where Go is absent).

use super::*;
use crate::history::Outcome;
use crate::testdir::TestDir;

/// The built checker, or `None` after printing why it cannot run here.
fn must_locate(test: &str) -> Option<Porcupine> {
    match Porcupine::locate().expect("porcupine-check builds") {
        Ok(porcupine) => Some(porcupine),
        Err(reason) => {
            skip(test, &reason);
            None
        }
    }
}

fn write(key: &str, value: &str, process: u64, times: (u64, u64)) -> RegisterOp {
    RegisterOp::write(process, times, key, value, Outcome::Ok)
}

fn read(key: &str, seen: Option<&str>, process: u64, times: (u64, u64)) -> RegisterOp {
    RegisterOp::read(process, times, key, Outcome::Ok, seen)
}

#[test]
fn linearizable_history_passes() {
    if must_locate("linearizable_history_passes").is_none() {
        return;
    }
    let dir = TestDir::new("porcupine-ok");
    let ops = vec![
        write("x", "1", 0, (0, 10)),
        write("x", "2", 1, (5, 20)),
        read("x", Some("1"), 2, (6, 15)),
        read("x", Some("2"), 2, (21, 30)),
        RegisterOp::cas(3, (31, 40), "x", (Some("2"), "3"), Outcome::Ok, Some(true)),
        RegisterOp::write(4, (35, 36), "x", "9", Outcome::Info),
        read("y", None, 5, (0, 1)),
        RegisterOp::write(5, (2, 3), "y", "lost", Outcome::Fail),
        read("y", None, 5, (4, 5)),
    ];
    let verdict = check_ops(&ops, dir.path(), false).unwrap();
    let Verdict::Linearizable(summary) = verdict else {
        panic!("expected linearizable, got {verdict:?}");
    };
    assert_eq!((summary.keys, summary.ops, summary.checked_ops), (2, 9, 8));
}

#[test]
fn stale_read_after_completed_write_is_not_linearizable() {
    if must_locate("stale_read_after_completed_write_is_not_linearizable").is_none() {
        return;
    }
    let dir = TestDir::new("porcupine-stale");
    let ops = vec![
        write("x", "1", 0, (0, 10)),
        write("x", "2", 1, (20, 30)),
        read("x", Some("1"), 2, (40, 50)),
        write("y", "a", 3, (0, 5)),
        read("y", Some("a"), 3, (6, 7)),
    ];
    let verdict = check_ops(&ops, dir.path(), true).unwrap();
    let Verdict::NotLinearizable(summary) = &verdict else {
        panic!("expected a violation, got {verdict:?}");
    };
    assert_eq!(summary.failed_keys, vec!["x".to_owned()]);
    assert!(!verdict.passed());
    let html = std::fs::read_to_string(dir.path().join("porcupine.html")).unwrap();
    assert!(html.contains("<html"), "visualization written");
}

#[test]
fn malformed_history_is_an_error_naming_the_line() {
    let Some(porcupine) = must_locate("malformed_history_is_an_error_naming_the_line") else {
        return;
    };
    let dir = TestDir::new("porcupine-bad");
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, "{\"process\": 1}\n").unwrap();
    let err = porcupine.check(&path, None, None).unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn binary_is_cached_outside_the_clone() {
    let Some(first) = must_locate("binary_is_cached_outside_the_clone") else {
        return;
    };
    let again = Porcupine::locate().unwrap().unwrap();
    assert_eq!(first.binary(), again.binary());
    assert!(!first.binary().starts_with(crate_dir()));
    let name = first
        .binary()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(name, format!("porcupine-check-{}", sources_hash()));
}

#[test]
fn without_go_the_check_is_skipped_with_a_reason() {
    let reason = Porcupine::locate_with(None).unwrap().unwrap_err();
    assert!(reason.contains("`go` is not on PATH"), "{reason}");
    assert!(Verdict::Skipped(reason).passed());
}

#[test]
fn go_module_tests_pass() {
    let Some(go) = find_on_path("go") else {
        skip("go_module_tests_pass", "`go` is not on PATH");
        return;
    };
    let module = crate_dir().join("porcupine");
    let out = Command::new(go)
        .args(["test", "./..."])
        .current_dir(&module)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// This crate's directory: `CARGO_MANIFEST_DIR` as cargo sets it when running the tests, else
/// as it was at build time (a shared build directory may hold a binary built in another
/// checkout).
fn crate_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}

/// Prints why `test` cannot run here, or fails it where `FERROKV_REQUIRE_TOOLS` is set (as
/// `scripts/test.sh` sets it: the project's machines have Go).
fn skip(test: &str, reason: &str) {
    let required = std::env::var("FERROKV_REQUIRE_TOOLS").is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{test} cannot run here: {reason} (FERROKV_REQUIRE_TOOLS is set)"
    );
    println!("SKIPPED: {test}: {reason}");
}
