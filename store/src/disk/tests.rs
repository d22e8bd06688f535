//! Table tests of the pure disk-full rules.

use super::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

#[test]
fn reserve_is_a_tenth_of_small_disks() {
    // (configured, capacity, effective)
    let rows = [
        (5 * GIB, 1000 * GIB, 5 * GIB),
        (5 * GIB, 50 * GIB, 5 * GIB),
        (5 * GIB, 20 * GIB, 2 * GIB),
        (5 * GIB, 100 * MIB, 10 * MIB),
        (8 * MIB, 96 * MIB, 8 * MIB),
        (0, 1000 * GIB, 0),
        (5 * GIB, 0, 0),
    ];
    for (configured, capacity, want) in rows {
        assert_eq!(
            effective_reserve(configured, capacity),
            want,
            "reserve {configured} on {capacity}"
        );
    }
    assert_eq!(placeholder_size(10 * MIB), 2 * MIB);
}

#[test]
fn usage_thresholds() {
    // (available, reserve, usage)
    let rows = [
        (100, 0, DiskUsage::Normal),
        (0, 0, DiskUsage::Normal),
        (101, 100, DiskUsage::Normal),
        (100, 100, DiskUsage::AlmostFull),
        (51, 100, DiskUsage::AlmostFull),
        (50, 100, DiskUsage::AlreadyFull),
        (0, 100, DiskUsage::AlreadyFull),
    ];
    for (available, reserve, want) in rows {
        assert_eq!(
            DiskUsage::classify(available, reserve),
            want,
            "{available} of reserve {reserve}"
        );
    }
}

#[test]
fn which_writes_pass_in_which_state() {
    use DiskFullOpt::NotAllowedOnFull as Never;
    use DiskFullOpt::{AllowedOnAlmostFull as Almost, AllowedOnAlreadyFull as Already};
    use DiskUsage::{AlmostFull, AlreadyFull, Normal};
    use WriteKind::{Grow, Settle};
    // (usage, kind, opt, allowed)
    let rows = [
        (Normal, Grow, Never, true),
        (Normal, Settle, Never, true),
        (AlmostFull, Grow, Never, false),
        (AlmostFull, Grow, Almost, true),
        (AlmostFull, Grow, Already, true),
        (AlmostFull, Settle, Never, true),
        (AlreadyFull, Grow, Never, false),
        (AlreadyFull, Grow, Almost, false),
        (AlreadyFull, Grow, Already, true),
        (AlreadyFull, Settle, Never, true),
    ];
    for (usage, kind, opt, want) in rows {
        assert_eq!(allows(usage, kind, opt), want, "{usage:?} {kind:?} {opt:?}");
    }
}

#[test]
fn stats_from_a_sample() {
    let sample = DiskSample {
        fs_total: 100 * MIB,
        fs_available: 60 * MIB,
        dir_size: 30 * MIB,
        placeholder: 2 * MIB,
    };
    // The data directory is not alone on the disk: the file system's own
    // available space is the bound.
    let s = DiskStats::compute(sample, 0, 2 * MIB);
    assert_eq!(
        (s.capacity, s.available, s.used),
        (100 * MIB, 60 * MIB, 30 * MIB)
    );
    // A capacity limit: available is what the limit leaves.
    let s = DiskStats::compute(sample, 50 * MIB, 2 * MIB);
    assert_eq!((s.capacity, s.available), (50 * MIB, 20 * MIB));
    // Placeholder released: its space is not counted as available.
    let released = DiskSample {
        fs_available: 62 * MIB,
        dir_size: 28 * MIB,
        placeholder: 0,
        ..sample
    };
    let s = DiskStats::compute(released, 0, 2 * MIB);
    assert_eq!(s.available, 60 * MIB);
    // Nothing underflows.
    let s = DiskStats::compute(DiskSample::default(), 0, 2 * MIB);
    assert_eq!(s, DiskStats::default());
}

#[test]
fn state_publishes_and_error_names_the_store() {
    let state = DiskState::default();
    assert_eq!(state.usage(), DiskUsage::Normal);
    let stats = DiskStats {
        capacity: 96 * MIB,
        available: 3 * MIB,
        used: 80 * MIB,
    };
    let before = state.publish(stats, 8 * MIB, DiskUsage::AlreadyFull);
    assert_eq!(before, DiskUsage::Normal);
    assert_eq!(state.usage(), DiskUsage::AlreadyFull);
    assert_eq!(state.stats(), stats);
    let e = disk_full_error(4, &state);
    let full = e.disk_full.expect("disk_full set");
    assert_eq!(full.store_id, vec![4]);
    assert!(full.reason.contains("disk full"), "{}", full.reason);
    assert!(
        e.message.contains("3.0 MiB available of 96.0 MiB"),
        "{}",
        e.message
    );
}
