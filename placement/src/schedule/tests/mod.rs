//! Table tests of the scheduling core, on a [`Fixture`] cluster view with a fake clock and a
//! [`FakeRegion`] that applies commands the way a store's leader does.

mod checkers;
mod drive;
mod isolation;
mod low_space;
mod operator_controller;
mod pending;
mod size_balance;
mod steps;

use proto::eraftpb::ConfChangeType;
use proto::metapb::{self, PeerRole};
use proto::pdpb;

use super::{Command, Context, PeerIds, Settings};
use crate::cluster::{ClusterView, RegionInfo};
use crate::meta::MetaWrite;

/// Peer ids handed out by tests start here.
pub const FIRST_NEW_PEER: u64 = 100;

/// A counter standing in for the id allocator; `dry` makes it starve.
#[derive(Debug)]
pub struct TestIds {
    pub next: u64,
    pub dry: bool,
}

impl Default for TestIds {
    fn default() -> Self {
        TestIds {
            next: FIRST_NEW_PEER,
            dry: false,
        }
    }
}

impl PeerIds for TestIds {
    fn next_peer_id(&mut self) -> Option<u64> {
        if self.dry {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }
}

/// A bootstrapped cluster view, a clock, and which stores still heartbeat.
pub struct Fixture {
    pub view: ClusterView,
    pub settings: Settings,
    pub now_ms: u64,
    silent: Vec<u64>,
    /// `(capacity, available)` bytes each store reports in its heartbeats (none: 0, 0).
    disks: std::collections::BTreeMap<u64, (u64, u64)>,
}

pub fn store_meta(id: u64, labels: &[(&str, &str)]) -> metapb::Store {
    metapb::Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        labels: labels
            .iter()
            .map(|(k, v)| metapb::StoreLabel {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        ..Default::default()
    }
}

pub fn peer(id: u64, store_id: u64, role: PeerRole) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        role: role as i32,
        is_witness: false,
    }
}

/// The steps of a move (joint consensus) of peer `from_peer` on `from_store` to a new peer
/// `new_peer` on `to_store`, moving the leadership to `transfer_to` first when it is set.
pub fn joint_move(
    from_store: u64,
    from_peer: u64,
    to_store: u64,
    new_peer: u64,
    transfer_to: Option<u64>,
) -> Vec<crate::schedule::Step> {
    use crate::schedule::Step;
    let mut steps = vec![Step::AddLearner {
        store_id: to_store,
        peer_id: new_peer,
    }];
    if let Some(to) = transfer_to {
        steps.push(Step::TransferLeader {
            from_store,
            to_store: to,
        });
    }
    steps.extend([
        Step::EnterJoint {
            promote: (to_store, new_peer),
            demote: (from_store, from_peer),
        },
        Step::LeaveJoint,
        Step::RemovePeer {
            store_id: from_store,
            peer_id: from_peer,
        },
    ]);
    steps
}

pub fn voter(id: u64, store_id: u64) -> metapb::Peer {
    peer(id, store_id, PeerRole::Voter)
}

pub fn learner(id: u64, store_id: u64) -> metapb::Peer {
    peer(id, store_id, PeerRole::Learner)
}

/// Region 1 over `["", "k")` with these peers, led by `leader` (a peer id).
pub fn region(peers: &[metapb::Peer], leader: u64, conf_ver: u64) -> RegionInfo {
    let meta = metapb::Region {
        id: 1,
        end_key: b"k".to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver,
            version: 1,
        }),
        peers: peers.to_vec(),
        ..Default::default()
    };
    let leader = peers.iter().find(|p| p.id == leader).copied();
    RegionInfo::from_meta(meta, leader)
}

/// `r` reporting `mib` MiB of data.
pub fn sized(mut r: RegionInfo, mib: u64) -> RegionInfo {
    r.approximate_size = mib << 20;
    r
}

/// A store with `zone` and `host` labels.
pub fn zoned(id: u64, zone: &str, host: &str) -> metapb::Store {
    store_meta(id, &[("zone", zone), ("host", host)])
}

/// `r` with these of its peers pending (catching up).
pub fn pending(mut r: RegionInfo, peer_ids: &[u64]) -> RegionInfo {
    r.pending_peers = (r.meta.peers.iter())
        .filter(|p| peer_ids.contains(&p.id))
        .copied()
        .collect();
    r
}

impl Fixture {
    /// Stores 1..=n without labels.
    pub fn new(n: u64) -> Self {
        let stores: Vec<metapb::Store> = (1..=n).map(|id| store_meta(id, &[])).collect();
        Fixture::with_stores(&stores)
    }

    /// These stores (the first one bootstraps), all Up; region 1 on the first store.
    pub fn with_stores(stores: &[metapb::Store]) -> Self {
        let mut view = ClusterView::new(7);
        let first = metapb::Region {
            id: 1,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![voter(1, stores[0].id)],
            ..Default::default()
        };
        for w in view.plan_bootstrap(&stores[0], &first, 3).unwrap() {
            view.apply(&w);
        }
        for s in &stores[1..] {
            for w in view.plan_put_store(s).unwrap() {
                view.apply(&w);
            }
        }
        let mut f = Fixture {
            view,
            settings: Settings {
                location_labels: vec!["zone".into(), "host".into()],
                ..Settings::default()
            },
            now_ms: 10_000_000,
            silent: Vec::new(),
            disks: Default::default(),
        };
        f.advance(0);
        f
    }

    /// Moves the clock and has every store not silenced heartbeat.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        let ids: Vec<u64> = self.view.stores().map(|s| s.meta.id).collect();
        for id in ids.into_iter().filter(|id| !self.silent.contains(id)) {
            let (capacity, available) = self.disks.get(&id).copied().unwrap_or_default();
            let stats = pdpb::StoreStats {
                store_id: id,
                capacity,
                available,
                used_size: capacity.saturating_sub(available),
                ..Default::default()
            };
            self.view.store_heartbeat(stats, self.now_ms).unwrap();
        }
    }

    /// Has `store_id` report this disk (bytes) from now on, and heartbeat once.
    pub fn disk(&mut self, store_id: u64, capacity: u64, available: u64) {
        self.disks.insert(store_id, (capacity, available));
        self.advance(0);
    }

    /// Stops a store's heartbeats and lets `max-store-down-time` pass: the store is Down.
    pub fn kill(&mut self, store_id: u64) {
        self.silent.push(store_id);
        let down = self.settings.max_store_down_time.as_millis() as u64;
        self.advance(down + 1000);
    }

    /// Enables an evict-leader scheduler for these stores (next to the default ones).
    pub fn evict(&mut self, stores: &[u64]) {
        let mut set = super::SchedulerSet::default();
        set.evict_leader.extend(stores);
        let rec = crate::meta::SchedulerRecord { names: set.names() };
        self.view.apply(&MetaWrite::Schedulers(rec));
    }

    /// Marks a store Offline (being drained).
    pub fn set_offline(&mut self, store_id: u64) {
        let mut meta = self.view.store(store_id).unwrap().meta.clone();
        meta.state = metapb::StoreState::Offline as i32;
        self.view.apply(&MetaWrite::Store(meta));
    }

    /// Reports a region as its leader would.
    pub fn report(&mut self, r: &RegionInfo) {
        self.view.region_heartbeat(r.clone()).unwrap();
    }

    /// Adds `n` single-voter regions led on `store_id`, to load a store with leaders/peers.
    pub fn load(&mut self, store_id: u64, n: u64, first_id: u64) {
        for i in 0..n {
            self.load_sized(store_id, first_id + i, 0);
        }
    }

    /// Adds single-voter region `id` of `mib` MiB (0: no size reported) led on `store_id`.
    pub fn load_sized(&mut self, store_id: u64, id: u64, mib: u64) {
        let meta = metapb::Region {
            id,
            start_key: format!("k{id:06}").into_bytes(),
            end_key: format!("k{id:06}~").into_bytes(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![voter(id * 10, store_id)],
            ..Default::default()
        };
        let leader = meta.peers.first().copied();
        self.report(&sized(RegionInfo::from_meta(meta, leader), mib));
    }

    pub fn ctx(&self) -> Context<'_> {
        Context {
            view: &self.view,
            settings: &self.settings,
            now_ms: self.now_ms,
            started_ms: 0,
        }
    }
}

/// A region as its leader sees it: applies commands like the store does, bumping `conf_ver`
/// for each conf change; a new learner stays pending until [`FakeRegion::catch_up`].
pub struct FakeRegion {
    pub info: RegionInfo,
}

impl FakeRegion {
    pub fn apply(&mut self, command: &Command) {
        let meta = &mut self.info.meta;
        let epoch = meta.region_epoch.get_or_insert_with(Default::default);
        match *command {
            Command::ChangePeer { peer, change_type } => {
                epoch.conf_ver += 1;
                match change_type {
                    ConfChangeType::AddLearnerNode => {
                        assert!(!meta.peers.iter().any(|p| p.store_id == peer.store_id));
                        assert_eq!(peer.role(), PeerRole::Learner);
                        meta.peers.push(peer);
                        self.info.pending_peers.push(peer);
                    }
                    ConfChangeType::AddNode => {
                        let p = meta.peers.iter_mut().find(|p| p.id == peer.id).unwrap();
                        assert_eq!(p.role(), PeerRole::Learner, "only learners are promoted");
                        p.role = PeerRole::Voter as i32;
                    }
                    ConfChangeType::RemoveNode => {
                        assert_ne!(
                            self.info.leader.map(|l| l.id),
                            Some(peer.id),
                            "leader removed"
                        );
                        meta.peers.retain(|p| p.id != peer.id);
                    }
                }
            }
            Command::TransferLeader { peer } => {
                let p = meta.peers.iter().find(|p| p.id == peer.id).unwrap();
                assert_eq!(p.role(), PeerRole::Voter);
                self.info.leader = Some(*p);
            }
            Command::EnterJoint { promote, demote } => {
                assert_ne!(
                    self.info.leader.map(|l| l.id),
                    Some(demote.id),
                    "leader demoted"
                );
                epoch.conf_ver += 2;
                for p in meta.peers.iter_mut() {
                    if p.id == promote.id {
                        assert_eq!(p.role(), PeerRole::Learner, "only learners are promoted");
                        p.role = PeerRole::IncomingVoter as i32;
                    } else if p.id == demote.id {
                        assert_eq!(p.role(), PeerRole::Voter, "only voters are demoted");
                        p.role = PeerRole::DemotingVoter as i32;
                    }
                }
            }
            Command::LeaveJoint => {
                epoch.conf_ver += 1;
                for p in meta.peers.iter_mut() {
                    match p.role() {
                        PeerRole::IncomingVoter => p.role = PeerRole::Voter as i32,
                        PeerRole::DemotingVoter => p.role = PeerRole::Learner as i32,
                        _ => {}
                    }
                }
            }
        }
    }

    /// Every pending learner has caught up.
    pub fn catch_up(&mut self) {
        self.info.pending_peers.clear();
    }

    pub fn voters(&self) -> Vec<u64> {
        let mut v: Vec<u64> = (self.info.meta.peers.iter())
            .filter(|p| p.role() == PeerRole::Voter)
            .map(|p| p.store_id)
            .collect();
        v.sort_unstable();
        v
    }
}
