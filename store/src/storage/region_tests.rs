//! Table tests of the region checks (`region.rs`): the decisions every client
//! relies on to route and retry. Each table holds (case, input, expected
//! outcome) rows; an outcome is compared whole, so a row fails on the wrong
//! error variant, a wrong field (region id, key, boundaries, current
//! regions, leader) or a different message.
//!
//! The storage the context checks run on has no raftstore behind it (a
//! detached router): they read only the store's published region metadata,
//! which each test sets up itself.

use std::fmt::Debug;
use std::sync::Arc;

use parking_lot::RwLock;
use proto::codec::encode_bytes;
use proto::{errorpb, kvrpcpb, metapb};

use super::region::{Checked, KeyMode};
use super::tests::MockTso;
use super::{ApiMode, Error, InvalidRequest, Result, Storage, StorageConfig};
use crate::engine::Engine;
use crate::lock_manager::{LockManager, PessimisticTxnConfig};
use crate::percolator::ConcurrencyManager;
use crate::raftstore::{RegionMeta, Router, StoreMeta};

/// The store the checks run on.
const STORE: u64 = 1;
/// The region led here (peers 71 on this store, 72 on store 2).
const LED: u64 = 7;
/// A region this store follows, led by peer 82 on store 2.
const FOLLOWED: u64 = 8;
/// A region this store follows without knowing its leader.
const LEADERLESS: u64 = 9;

/// Compares outcomes whole (neither `Error` nor `Checked` is `PartialEq`;
/// their `Debug` forms carry every field).
fn same<T: Debug>(case: &str, got: Result<T>, want: Result<T>) {
    assert_eq!(format!("{got:#?}"), format!("{want:#?}"), "case {case:?}");
}

fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        ..Default::default()
    }
}

/// Region `id` at conf_ver 3, version 5, with peers `id`1 here and `id`2 on
/// store 2, holding `[start_key, end_key)` exactly as given (already encoded
/// where the region's keys are).
fn region(id: u64, start_key: &[u8], end_key: &[u8]) -> metapb::Region {
    metapb::Region {
        id,
        start_key: start_key.to_vec(),
        end_key: end_key.to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 3,
            version: 5,
        }),
        peers: vec![peer(id * 10 + 1, STORE), peer(id * 10 + 2, 2)],
        ..Default::default()
    }
}

/// A region boundary as placement cuts it for transactional and API V2 keys.
fn enc(user_key: &[u8]) -> Vec<u8> {
    encode_bytes(user_key)
}

fn checked(v2: bool, mode: KeyMode, start_key: &[u8], end_key: &[u8]) -> Checked {
    Checked {
        region: region(LED, start_key, end_key),
        v2,
        mode,
        replica: false,
        stale: false,
    }
}

/// V1 transactional keys in `[b, m)`.
fn txn_b_m() -> Checked {
    checked(false, KeyMode::Txn, &enc(b"b"), &enc(b"m"))
}

/// The region error a key outside `c`'s region gets.
fn not_in_region(key: &[u8], c: &Checked) -> Error {
    Error::region(errorpb::Error {
        message: format!("key is not in region {}", c.region.id),
        key_not_in_region: Some(errorpb::KeyNotInRegion {
            key: key.to_vec(),
            region_id: c.region.id,
            start_key: c.region.start_key.clone(),
            end_key: c.region.end_key.clone(),
        }),
        ..Default::default()
    })
}

fn invalid(e: InvalidRequest) -> Error {
    Error::Invalid(e)
}

fn raw_prefix() -> Error {
    invalid(InvalidRequest::KeyspacePrefix {
        mode: "raw",
        prefix: 'r',
    })
}

fn txn_prefix() -> Error {
    invalid(InvalidRequest::KeyspacePrefix {
        mode: "transactional",
        prefix: 'x',
    })
}

#[test]
fn contains_compares_keys_as_the_region_boundaries_are_encoded() {
    let v1_raw = |s: &[u8], e: &[u8]| checked(false, KeyMode::Raw, s, e);
    let v2_raw = |s: &[u8], e: &[u8]| checked(true, KeyMode::Raw, &enc(s), &enc(e));
    #[rustfmt::skip]
    let rows: Vec<(&str, Checked, &[u8], bool)> = vec![
        ("txn: below the start", txn_b_m(), b"a", false),
        // Unencoded, "b" would sort below its own encoded boundary.
        ("txn: at the start", txn_b_m(), b"b", true),
        ("txn: inside", txn_b_m(), b"c", true),
        ("txn: at the end, which is exclusive", txn_b_m(), b"m", false),
        ("txn: past the end", txn_b_m(), b"z", false),
        ("txn: the empty key below the start", txn_b_m(), b"", false),
        ("txn: unbounded end", checked(false, KeyMode::Txn, &enc(b"b"), b""), b"zzzz", true),
        ("txn: the empty key in the first region", checked(false, KeyMode::Txn, b"", &enc(b"m")), b"", true),
        // Encoded, "a" would sort after the plain end "a\0".
        ("v1 raw: plain boundaries", v1_raw(b"a", b"a\0"), b"a", true),
        ("v1 raw: at the plain end", v1_raw(b"a", b"a\0"), b"a\0", false),
        ("v1 raw: below the plain start", v1_raw(b"b", b"m"), b"a", false),
        ("v2 raw: at the encoded start", v2_raw(b"r000b", b"r000m"), b"r000b", true),
        ("v2 raw: at the encoded end", v2_raw(b"r000b", b"r000m"), b"r000m", false),
    ];
    for (case, c, key, want) in rows {
        assert_eq!(c.contains(key), want, "case {case:?}");
    }
}

#[test]
fn check_range_takes_ranges_starting_in_the_region_and_ending_by_its_end() {
    let unbounded = checked(false, KeyMode::Txn, &enc(b"b"), b"");
    let v1_raw = checked(false, KeyMode::Raw, b"b", b"m");
    let v2_txn = checked(true, KeyMode::Txn, &enc(b"x000b"), &enc(b"x000m"));
    let v2_raw = checked(true, KeyMode::Raw, &enc(b"r000b"), &enc(b"r000m"));
    let reversed = || invalid(InvalidRequest::ReversedRange { what: "range " });
    let t = txn_b_m();
    type Row<'a> = (&'a str, &'a Checked, &'a [u8], &'a [u8], Result<()>);
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("inside", &t, b"c", b"d", Ok(())),
        ("the whole region, end inclusive", &t, b"b", b"m", Ok(())),
        ("empty range: end equals start", &t, b"c", b"c", Ok(())),
        ("reversed", &t, b"d", b"c", Err(reversed())),
        ("reversed, checked before the region", &t, b"z", b"a", Err(reversed())),
        ("start below the region", &t, b"a", b"d", Err(not_in_region(b"a", &t))),
        ("start at the region's end", &t, b"m", b"n", Err(not_in_region(b"m", &t))),
        ("end past the region", &t, b"c", b"n", Err(not_in_region(b"n", &t))),
        // The client reads an empty end key as "to the end of the keyspace".
        ("unbounded end, bounded region", &t, b"c", b"", Err(not_in_region(b"", &t))),
        ("unbounded end, unbounded region", &unbounded, b"c", b"", Ok(())),
        ("bounded end, unbounded region", &unbounded, b"c", b"zz", Ok(())),
        ("v1 raw: plain end", &v1_raw, b"c", b"m", Ok(())),
        ("v1 raw: end past", &v1_raw, b"c", b"m\0", Err(not_in_region(b"m\0", &v1_raw))),
        ("v1 raw: no keyspace prefix needed", &v1_raw, b"b", b"c", Ok(())),
        ("v2 txn: inside its keyspace", &v2_txn, b"x000c", b"x000d", Ok(())),
        ("v2 txn: start without the prefix", &v2_txn, b"c", b"x000d", Err(txn_prefix())),
        ("v2 txn: start with the raw prefix", &v2_txn, b"r000c", b"x000d", Err(txn_prefix())),
        // Only the start is prefix-checked; the end is only placed.
        ("v2 txn: end outside", &v2_txn, b"x000c", b"y", Err(not_in_region(b"y", &v2_txn))),
        ("v2 raw: inside its keyspace", &v2_raw, b"r000c", b"r000m", Ok(())),
        ("v2 raw: start with the txn prefix", &v2_raw, b"x000c", b"", Err(raw_prefix())),
        ("v2 raw: start too short", &v2_raw, b"r00", b"r000c", Err(raw_prefix())),
    ];
    for (case, c, start, end, want) in rows {
        same(case, c.check_range(start, end), want);
    }
}

#[test]
fn user_range_decodes_encoded_boundaries_only() {
    type Range = (Vec<u8>, Option<Vec<u8>>);
    let range = |lower: &[u8], upper: Option<&[u8]>| -> Range {
        (lower.to_vec(), upper.map(|u| u.to_vec()))
    };
    let txn = |s: &[u8], e: &[u8]| checked(false, KeyMode::Txn, s, e);
    let v1_raw = |s: &[u8], e: &[u8]| checked(false, KeyMode::Raw, s, e);
    let v2_raw = |s: &[u8], e: &[u8]| checked(true, KeyMode::Raw, s, e);
    #[rustfmt::skip]
    let rows: Vec<(&str, Checked, Range)> = vec![
        ("txn: encoded boundaries", txn(&enc(b"b"), &enc(b"m")), range(b"b", Some(b"m"))),
        ("txn: the only region", txn(b"", b""), range(b"", None)),
        ("txn: an undecodable boundary kept as stored", txn(b"b", &enc(b"m")), range(b"b", Some(b"m"))),
        ("v1 raw: plain boundaries as they are", v1_raw(b"b", b"m"), range(b"b", Some(b"m"))),
        ("v1 raw: an encoded-looking boundary not decoded", v1_raw(&enc(b"b"), b""), (enc(b"b"), None)),
        ("v2 raw: encoded boundaries", v2_raw(&enc(b"r000b"), &enc(b"r000m")), range(b"r000b", Some(b"r000m"))),
    ];
    for (case, c, want) in rows {
        assert_eq!(c.user_range(), want, "case {case:?}");
    }
}

#[test]
fn clip_narrows_a_user_range_to_the_region() {
    let unbounded = checked(false, KeyMode::Txn, &enc(b"b"), b"");
    let t = txn_b_m();
    type Row<'a> = (
        &'a str,
        &'a Checked,
        &'a [u8],
        &'a [u8],
        (&'a [u8], Option<&'a [u8]>),
    );
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("inside", &t, b"c", b"d", (b"c", Some(b"d"))),
        ("lower below the region", &t, b"a", b"d", (b"b", Some(b"d"))),
        ("lower at the region's start", &t, b"b", b"d", (b"b", Some(b"d"))),
        ("empty lower", &t, b"", b"d", (b"b", Some(b"d"))),
        ("upper past the region", &t, b"c", b"z", (b"c", Some(b"m"))),
        ("upper at the region's end", &t, b"c", b"m", (b"c", Some(b"m"))),
        ("unbounded upper, bounded region", &t, b"c", b"", (b"c", Some(b"m"))),
        ("unbounded upper, unbounded region", &unbounded, b"c", b"", (b"c", None)),
        ("bounded upper, unbounded region", &unbounded, b"c", b"z", (b"c", Some(b"z"))),
        // Clipping does not empty a range past the region; callers read nothing there.
        ("range past the region", &t, b"x", b"z", (b"x", Some(b"m"))),
    ];
    for (case, c, lower, upper, (want_lower, want_upper)) in rows {
        let want = (want_lower.to_vec(), want_upper.map(|u| u.to_vec()));
        assert_eq!(c.clip(lower, upper), want, "case {case:?}");
    }
}

/// An engine and the region metadata of store 1: [`LED`] led here,
/// [`FOLLOWED`] and [`LEADERLESS`] followed; all three at epoch 3/5.
struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    meta: Arc<RwLock<StoreMeta>>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(&dir.path().join("db")).unwrap();
        let replica = |id: u64, leader_id: u64| RegionMeta {
            region: region(id, b"", b""),
            leader_id,
            is_leader: leader_id == id * 10 + 1,
            term: 2,
            pending_peers: vec![],
            down_peers: vec![],
            written: Default::default(),
            lease: Default::default(),
            progress: Default::default(),
        };
        let mut meta = StoreMeta {
            store_id: STORE,
            ..Default::default()
        };
        meta.regions.insert(LED, replica(LED, 71));
        meta.regions.insert(FOLLOWED, replica(FOLLOWED, 82));
        meta.regions.insert(LEADERLESS, replica(LEADERLESS, 0));
        Fixture {
            _dir: dir,
            engine,
            meta: Arc::new(RwLock::new(meta)),
        }
    }

    fn storage(&self, api_version: ApiMode, max_key_size: usize) -> Storage {
        let (router, _inbox) = Router::detached(1);
        Storage::new(
            self.engine.clone(),
            router,
            self.meta.clone(),
            Arc::new(ConcurrencyManager::new(0)),
            StorageConfig {
                api_version,
                max_key_size,
                ..Default::default()
            },
            MockTso::starting_at(0),
            LockManager::new(PessimisticTxnConfig::default(), self.meta.clone()),
        )
    }
}

/// A request context for `region_id` at `epoch` (conf_ver, version), from
/// a client that believes the peer is on `peer_store`.
fn ctx(
    region_id: u64,
    epoch: Option<(u64, u64)>,
    peer_store: Option<u64>,
    v2: bool,
) -> Option<kvrpcpb::Context> {
    Some(kvrpcpb::Context {
        region_id,
        region_epoch: epoch.map(|(conf_ver, version)| metapb::RegionEpoch { conf_ver, version }),
        peer: peer_store.map(|s| peer(region_id * 10 + s, s)),
        api_version: if v2 {
            kvrpcpb::ApiVersion::V2 as i32
        } else {
            kvrpcpb::ApiVersion::V1 as i32
        },
        ..Default::default()
    })
}

fn region_error(e: errorpb::Error) -> Result<Checked> {
    Err(Error::region(e))
}

fn epoch_not_match(region_id: u64, message: &str) -> Result<Checked> {
    region_error(errorpb::Error {
        message: message.into(),
        epoch_not_match: Some(errorpb::EpochNotMatch {
            current_regions: vec![region(region_id, b"", b"")],
        }),
        ..Default::default()
    })
}

fn region_not_found(region_id: u64) -> Result<Checked> {
    region_error(errorpb::Error {
        message: format!("region {region_id} is not found"),
        region_not_found: Some(errorpb::RegionNotFound { region_id }),
        ..Default::default()
    })
}

fn not_leader(region_id: u64, leader: Option<metapb::Peer>) -> Result<Checked> {
    region_error(errorpb::Error {
        message: format!("peer is not leader for region {region_id}"),
        not_leader: Some(errorpb::NotLeader { region_id, leader }),
        ..Default::default()
    })
}

fn api_version(store: &'static str, request: &'static str) -> Result<Checked> {
    Err(invalid(InvalidRequest::ApiVersion { store, request }))
}

fn passed(v2: bool, mode: KeyMode) -> Result<Checked> {
    Ok(Checked {
        region: region(LED, b"", b""),
        v2,
        mode,
        replica: false,
        stale: false,
    })
}

/// `context` asking for a replica read.
fn replica_read(context: Option<kvrpcpb::Context>) -> Option<kvrpcpb::Context> {
    context.map(|c| kvrpcpb::Context {
        replica_read: true,
        ..c
    })
}

/// Passed on the follower of `region_id`, as a replica read.
fn passed_as_replica(region_id: u64, mode: KeyMode) -> Result<Checked> {
    Ok(Checked {
        region: region(region_id, b"", b""),
        v2: false,
        mode,
        replica: true,
        stale: false,
    })
}

#[test]
fn check_context_gives_the_region_error_clients_retry_on() {
    let f = Fixture::new();
    let current = Some((3, 5));
    let store_not_match = || {
        region_error(errorpb::Error {
            message: "store not match: request 2, actual 1".into(),
            store_not_match: Some(errorpb::StoreNotMatch {
                request_store_id: 2,
                actual_store_id: 1,
            }),
            ..Default::default()
        })
    };
    use ApiMode::{Mixed, V1, V2};
    use KeyMode::{Raw, Txn};
    type Row = (
        &'static str,
        ApiMode,
        Option<kvrpcpb::Context>,
        KeyMode,
        Result<Checked>,
    );
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("leader, current epoch, this store", Mixed, ctx(LED, current, Some(1), false), Txn, passed(false, Txn)),
        ("V2 request to a mixed store", Mixed, ctx(LED, current, Some(1), true), Raw, passed(true, Raw)),
        ("V1 request to a V1 store", V1, ctx(LED, current, Some(1), false), Raw, passed(false, Raw)),
        ("V2 request to a V2 store", V2, ctx(LED, current, Some(1), true), Txn, passed(true, Txn)),
        ("no peer named", Mixed, ctx(LED, current, None, false), Txn, passed(false, Txn)),
        ("peer on store 0 is not checked", Mixed, ctx(LED, current, Some(0), false), Txn, passed(false, Txn)),
        ("V2 request to a V1 store", V1, ctx(LED, current, Some(1), true), Raw, api_version("V1", "V2")),
        ("V1 request to a V2 store", V2, ctx(LED, current, Some(1), false), Raw, api_version("V2", "V1")),
        ("API version before the region", V1, ctx(99, None, Some(2), true), Raw, api_version("V1", "V2")),
        ("no context: region 0", Mixed, None, Txn, region_not_found(0)),
        ("unknown region", Mixed, ctx(99, current, Some(1), false), Txn, region_not_found(99)),
        ("peer on another store", Mixed, ctx(LED, current, Some(2), false), Txn, store_not_match()),
        ("store before the epoch", Mixed, ctx(LED, Some((1, 1)), Some(2), false), Txn, store_not_match()),
        ("stale version", Mixed, ctx(LED, Some((3, 4)), Some(1), false), Txn,
            epoch_not_match(LED, "epoch not match: request 3/4, current 3/5")),
        ("stale conf_ver", Mixed, ctx(LED, Some((2, 5)), Some(1), false), Txn,
            epoch_not_match(LED, "epoch not match: request 2/5, current 3/5")),
        ("epoch newer than the replica's", Mixed, ctx(LED, Some((3, 6)), Some(1), false), Txn,
            epoch_not_match(LED, "epoch not match: request 3/6, current 3/5")),
        ("no epoch sent", Mixed, ctx(LED, None, Some(1), false), Txn,
            epoch_not_match(LED, "epoch not match: request 0/0, current 3/5")),
        ("follower knowing the leader", Mixed, ctx(FOLLOWED, current, Some(1), false), Txn,
            not_leader(FOLLOWED, Some(peer(82, 2)))),
        ("follower not knowing the leader", Mixed, ctx(LEADERLESS, current, Some(1), false), Raw,
            not_leader(LEADERLESS, None)),
        ("epoch before leadership", Mixed, ctx(FOLLOWED, Some((3, 4)), Some(1), false), Txn,
            epoch_not_match(FOLLOWED, "epoch not match: request 3/4, current 3/5")),
        ("replica read on a follower", Mixed, replica_read(ctx(FOLLOWED, current, Some(1), false)), Txn,
            passed_as_replica(FOLLOWED, Txn)),
        ("replica read on a follower not knowing the leader (the read index says)", Mixed,
            replica_read(ctx(LEADERLESS, current, Some(1), false)), Raw, passed_as_replica(LEADERLESS, Raw)),
        ("replica read on the leader: a leader read", Mixed, replica_read(ctx(LED, current, Some(1), false)), Txn,
            passed(false, Txn)),
        ("replica read at a stale epoch", Mixed, replica_read(ctx(FOLLOWED, Some((3, 4)), Some(1), false)), Txn,
            epoch_not_match(FOLLOWED, "epoch not match: request 3/4, current 3/5")),
    ];
    for (case, api, context, mode, want) in rows {
        let s = f.storage(api, 8192);
        same(case, s.check_context(context.as_ref(), mode), want);
    }
}

#[test]
fn check_key_sizes_refuses_the_first_key_over_the_limit() {
    let f = Fixture::new();
    let s = f.storage(ApiMode::Mixed, 4);
    let too_large = |len| Err(invalid(InvalidRequest::KeyTooLarge { len, limit: 4 }));
    type Row<'a> = (&'a str, Vec<&'a [u8]>, Result<()>);
    let rows: Vec<Row> = vec![
        ("no keys", vec![], Ok(())),
        ("at the limit", vec![b"abcd"], Ok(())),
        ("the empty key is no size problem", vec![b""], Ok(())),
        ("one byte over", vec![b"abcde"], too_large(5)),
        (
            "the first one over",
            vec![b"a", b"abcdef", b"abcdefg"],
            too_large(6),
        ),
    ];
    for (case, keys, want) in rows {
        same(case, s.check_key_sizes(keys), want);
    }
}

#[test]
fn check_keys_refuses_the_first_empty_unprefixed_or_outside_key() {
    let f = Fixture::new();
    let s = f.storage(ApiMode::Mixed, 8192);
    let t = txn_b_m();
    let first = checked(false, KeyMode::Txn, b"", &enc(b"m"));
    let v1_raw = checked(false, KeyMode::Raw, b"b", b"m");
    let v2_txn = checked(true, KeyMode::Txn, &enc(b"x000b"), &enc(b"x000m"));
    let v2_raw = checked(true, KeyMode::Raw, &enc(b"r000b"), &enc(b"r000m"));
    let empty = || Err(invalid(InvalidRequest::EmptyKey));
    type Row<'a> = (&'a str, &'a Checked, Vec<&'a [u8]>, bool, Result<()>);
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("all inside", &t, vec![b"b", b"c", b"l"], false, Ok(())),
        ("no keys", &t, vec![], false, Ok(())),
        ("the empty key refused", &t, vec![b""], false, empty()),
        ("the empty key refused in the first region too", &first, vec![b""], false, empty()),
        ("the empty key allowed in the first region", &first, vec![b""], true, Ok(())),
        ("the empty key allowed, outside a later region", &t, vec![b""], true, Err(not_in_region(b"", &t))),
        ("the first key outside", &t, vec![b"c", b"z", b"a"], false, Err(not_in_region(b"z", &t))),
        ("an empty key before one outside", &t, vec![b"", b"z"], false, empty()),
        ("a key outside before an empty one", &t, vec![b"z", b""], false, Err(not_in_region(b"z", &t))),
        ("v1 raw: plain boundaries, no prefix", &v1_raw, vec![b"b", b"c"], false, Ok(())),
        ("v1 raw: outside", &v1_raw, vec![b"m"], false, Err(not_in_region(b"m", &v1_raw))),
        ("v2 txn: prefixed and inside", &v2_txn, vec![b"x000c"], false, Ok(())),
        ("v2 txn: the raw prefix", &v2_txn, vec![b"r000c"], false, Err(txn_prefix())),
        ("v2 txn: too short for a keyspace", &v2_txn, vec![b"x00"], false, Err(txn_prefix())),
        ("v2 txn: a bare keyspace prefix is placed", &v2_txn, vec![b"x000"], false, Err(not_in_region(b"x000", &v2_txn))),
        ("v2 txn: prefix before the region", &v2_txn, vec![b"r000z"], false, Err(txn_prefix())),
        ("v2 raw: prefixed and inside", &v2_raw, vec![b"r000c", b"r000l"], false, Ok(())),
        ("v2 raw: the txn prefix", &v2_raw, vec![b"r000c", b"x000c"], false, Err(raw_prefix())),
        ("v2 raw: the allowed empty key lacks the prefix", &v2_raw, vec![b""], true, Err(raw_prefix())),
        ("v2 raw: outside its region", &v2_raw, vec![b"r000m"], false, Err(not_in_region(b"r000m", &v2_raw))),
    ];
    for (case, c, keys, allow_empty, want) in rows {
        same(case, s.check_keys(c, keys, allow_empty), want);
    }
}

#[test]
fn a_stale_read_above_the_followers_safe_ts_is_data_is_not_ready() {
    let f = Fixture::new();
    let s = f.storage(ApiMode::Mixed, 8192);
    f.meta.read().regions[&FOLLOWED]
        .progress
        .advance_safe_ts(100);
    let context = kvrpcpb::Context {
        stale_read: true,
        ..ctx(FOLLOWED, Some((3, 5)), Some(1), false).unwrap()
    };
    let checked = s.check_context(Some(&context), KeyMode::Txn).unwrap();
    assert!(checked.replica && checked.stale, "{checked:?}");
    s.check_safe_ts(&checked, 100).unwrap();
    s.check_safe_ts(&checked, 99).unwrap();
    let not_ready: Result<()> = Err(super::Error::region(errorpb::Error {
        message: format!("stale read at 101 above region {FOLLOWED}'s safe ts 100"),
        data_is_not_ready: Some(errorpb::DataIsNotReady {
            region_id: FOLLOWED,
            peer_id: FOLLOWED * 10 + 1,
            safe_ts: 100,
        }),
        ..Default::default()
    }));
    same(
        "above the safe ts",
        s.check_safe_ts(&checked, 101),
        not_ready,
    );
    // Store-wide, the smallest safe ts of the replicas here (the others have none yet).
    assert_eq!(s.store_safe_ts(None), 0);
    for id in [LED, LEADERLESS] {
        f.meta.read().regions[&id].progress.advance_safe_ts(300);
    }
    assert_eq!(s.store_safe_ts(None), 100);
}
