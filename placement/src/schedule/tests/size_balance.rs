//! Region balance by size: stores converge on equal total region size (MiB), within the
//! tolerance, never at the cost of isolation, and without moving a replica back.

use super::*;
use crate::schedule::region_balance::{self, DESC};
use crate::schedule::{OpKind, Operator, Operators, Step};

/// Region 1 on stores 1-3 (peer id = store id, led by store 1) holding `mib` MiB.
fn three(mib: u64) -> RegionInfo {
    sized(region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 3), mib)
}

fn moved(from: u64, to: u64) -> Vec<Step> {
    joint_move(from, from, to, FIRST_NEW_PEER, None)
}

fn check(f: &Fixture, r: &RegionInfo, ops: &Operators) -> Option<Vec<Step>> {
    let op = region_balance::check(r, &f.ctx(), ops, &mut TestIds::default())?;
    assert_eq!(op.desc, DESC);
    Some(op.steps)
}

#[test]
fn size_balance_table() {
    // (name, size of region 1, extra single-replica regions as (store, MiB), expected)
    type Row = (&'static str, u64, Vec<(u64, u64)>, Option<Vec<Step>>);
    let rows: Vec<Row> = vec![
        // Scores 10, 510, 10, 0; average region 132 MiB: 510 - 132 > 0 + 132.
        (
            "one big region on store 2: move from store 2",
            10,
            vec![(2, 500)],
            Some(moved(2, 4)),
        ),
        // Unknown sizes weigh 1 MiB each, so this is count balance: 2 regions against 0.
        (
            "sizes unknown, gap of 2 regions: nothing",
            0,
            vec![(2, 0)],
            None,
        ),
        (
            "sizes unknown, gap of 3 regions: move",
            0,
            vec![(2, 0), (2, 0)],
            Some(moved(2, 4)),
        ),
        // Scores 100, 200, 100, 0; average 100: 200 - 100 is not above 0 + 100.
        ("within tolerance: nothing", 100, vec![(2, 100)], None),
        // Scores 100, 201, 100, 0; average 100: 201 - 100 > 0 + 100.
        (
            "just past the tolerance: move",
            100,
            vec![(2, 101)],
            Some(moved(2, 4)),
        ),
        // Scores 10, 510, 10, 300; average 166: 510 - 166 > 300 + 166 fails.
        (
            "target nearly as full: nothing",
            10,
            vec![(2, 500), (4, 300)],
            None,
        ),
        // Scores 1000, 1000, 1000, 0: moving the region would only swap two stores.
        ("one huge region: nothing", 1000, vec![], None),
        // Scores 10, 510, 10, 0, 0 with store 1 the fullest after store 2.
        (
            "fullest store first: store 2 before store 1",
            10,
            vec![(1, 400), (2, 500)],
            Some(moved(2, 4)),
        ),
    ];
    for (name, mib, extra, want) in rows {
        let mut f = Fixture::new(4);
        let r = three(mib);
        f.report(&r);
        for (i, (store, size)) in extra.iter().enumerate() {
            f.load_sized(*store, 1000 + i as u64, *size);
        }
        assert_eq!(check(&f, &r, &Operators::default()), want, "{name}");
    }
}

#[test]
fn size_balance_does_not_move_back() {
    let mut f = Fixture::new(4);
    let r = three(10);
    f.report(&r);
    f.load_sized(2, 1000, 500);
    assert_eq!(check(&f, &r, &Operators::default()), Some(moved(2, 4)));
    // The move done: region 1 on stores 1, 3 and 4; store 2 keeps its big region.
    let after = sized(region(&[voter(1, 1), voter(3, 3), voter(100, 4)], 1, 6), 10);
    f.report(&after);
    assert_eq!(f.view.regions().store_count(4).region_size, 10);
    assert_eq!(check(&f, &after, &Operators::default()), None);
}

#[test]
fn size_balance_keeps_isolation() {
    // Zone z1 holds stores 1, 2 and 4 (hosts h1, h2, h4), zone z2 store 3.
    let stores = [
        zoned(1, "z1", "h1"),
        zoned(2, "z1", "h2"),
        zoned(3, "z2", "h3"),
        zoned(4, "z1", "h4"),
    ];
    let run = |level: &str| {
        let mut f = Fixture::with_stores(&stores);
        f.settings.isolation_level = level.to_owned();
        let r = three(10);
        f.report(&r);
        f.load_sized(2, 1000, 500);
        check(&f, &r, &Operators::default())
    };
    // Store 4 is as well placed as store 2 for the region's hosts.
    assert_eq!(run(""), Some(moved(2, 4)));
    assert_eq!(run("host"), Some(moved(2, 4)));
    // At zone level store 4 would share zone z1 with store 1.
    assert_eq!(run("zone"), None);
}

#[test]
fn size_balance_respects_limits() {
    let mut f = Fixture::new(5);
    let r = three(10);
    f.report(&r);
    f.load_sized(2, 1000, 500);
    f.settings.store_add_peer_limit = 1;
    // Another region is adding a 1 MiB peer to store 4: it is at its limit, store 5 is next.
    let mut ops = Operators::default();
    let mut other = region(&[voter(90, 1)], 90, 1);
    other.meta.id = 9;
    let kind = OpKind {
        leader: false,
        replica: true,
    };
    let steps = vec![Step::AddLearner {
        store_id: 4,
        peer_id: 900,
    }];
    ops.add(
        Operator::new("make-up-replica", kind, &other, steps, 0),
        &f.settings,
    )
    .unwrap();
    assert_eq!(check(&f, &r, &ops), Some(moved(2, 5)));
    // No balance-region may run beyond region-schedule-limit.
    let mut running = region_balance::check(&r, &f.ctx(), &ops, &mut TestIds::default()).unwrap();
    let mut full = Operators::default();
    running.region_id = 7;
    full.add(running, &f.settings).unwrap();
    f.settings.region_schedule_limit = 1;
    assert_eq!(check(&f, &r, &full), None);
    f.settings.region_schedule_limit = 2;
    // The running move (of a region the view does not know: 1 MiB) fills store 5's add
    // limit: store 4 is next.
    assert_eq!(check(&f, &r, &full), Some(moved(2, 4)));
}
