//! Stores low on space (available under `1 - low-space-ratio` of capacity, PD's rule) get
//! no new replica, from the replica checker or from region balance; one row per situation.

use super::*;
use crate::schedule::replica_checker::{self, Blocked};
use crate::schedule::{region_balance, Operators, Step};

const GIB: u64 = 1 << 30;

fn added_on(store_id: u64) -> Vec<Step> {
    vec![
        Step::AddLearner {
            store_id,
            peer_id: FIRST_NEW_PEER,
        },
        Step::PromoteLearner {
            store_id,
            peer_id: FIRST_NEW_PEER,
        },
    ]
}

/// What the replica checker does for a region on stores 1 and 2 of four stores whose disks
/// are `disks` (`(store, capacity, available)`).
fn make_up(disks: &[(u64, u64, u64)]) -> (Option<Vec<Step>>, Option<Blocked>) {
    let mut f = Fixture::new(4);
    let r = region(&[voter(1, 1), voter(2, 2)], 1, 2);
    f.report(&r);
    for (store, capacity, available) in disks {
        f.disk(*store, *capacity, *available);
    }
    let checked =
        replica_checker::check_region(&r, &f.ctx(), &Operators::default(), &mut TestIds::default());
    (checked.op.map(|op| op.steps), checked.blocked)
}

#[test]
fn low_space_store_gets_no_new_replica() {
    type Row = (
        &'static str,
        Vec<(u64, u64, u64)>,
        Option<Vec<Step>>,
        Option<Blocked>,
    );
    let rows: Vec<Row> = vec![
        (
            "no disk reported: lowest id",
            vec![],
            Some(added_on(3)),
            None,
        ),
        (
            "store 3 at 10% available: store 4",
            vec![(3, 10 * GIB, GIB), (4, 10 * GIB, 5 * GIB)],
            Some(added_on(4)),
            None,
        ),
        (
            "store 3 just at 20% available: not low",
            vec![(3, 10 * GIB, 2 * GIB), (4, 10 * GIB, 5 * GIB)],
            Some(added_on(3)),
            None,
        ),
        (
            "both candidates low: blocked",
            vec![(3, 10 * GIB, GIB), (4, 10 * GIB, 0)],
            None,
            Some(Blocked::LowSpace),
        ),
        (
            "10% of a big disk on a young store (over 8 GiB left): not low",
            vec![(3, 100 * GIB, 10 * GIB)],
            Some(added_on(3)),
            None,
        ),
        (
            "capacity unknown (0): not low",
            vec![(3, 0, 0)],
            Some(added_on(3)),
            None,
        ),
    ];
    for (name, disks, want_steps, want_blocked) in rows {
        let (steps, blocked) = make_up(&disks);
        assert_eq!(steps, want_steps, "{name}");
        assert_eq!(blocked, want_blocked, "{name}");
    }
}

#[test]
fn low_space_ratio_is_the_knob() {
    let mut f = Fixture::new(4);
    let r = region(&[voter(1, 1), voter(2, 2)], 1, 2);
    f.report(&r);
    f.disk(3, 10 * GIB, 5 * GIB / 2);
    let check = |f: &Fixture| {
        let ctx = f.ctx();
        let ops = Operators::default();
        replica_checker::check(&r, &ctx, &ops, &mut TestIds::default()).map(|op| op.steps)
    };
    // 25% available: fine under PD's 0.8, low under 0.7.
    assert_eq!(check(&f), Some(added_on(3)));
    f.settings.low_space_ratio = 0.7;
    assert!(f.ctx().is_low_space(3));
    assert_eq!(check(&f), Some(added_on(4)));
}

#[test]
fn region_balance_moves_nothing_onto_a_low_space_store() {
    let three = sized(region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 3), 10);
    let mut f = Fixture::new(4);
    f.report(&three);
    f.load_sized(2, 1000, 500);
    let balance = |f: &Fixture| {
        let op = region_balance::check(
            &three,
            &f.ctx(),
            &Operators::default(),
            &mut TestIds::default(),
        );
        op.map(|op| op.steps)
    };
    // Store 2 holds 510 MiB, store 4 nothing: move from 2 to 4 ...
    let want = joint_move(2, 2, 4, FIRST_NEW_PEER, None);
    assert_eq!(balance(&f), Some(want));
    // ... unless store 4 is low on space.
    f.disk(4, 10 * GIB, GIB / 2);
    assert_eq!(balance(&f), None);
}
