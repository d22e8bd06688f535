//! High availability: placement members form one raft group (raft-rs) that replicates every
//! metadata write, the TSO high-water mark and id mark included.
//!
//! - [`log`]: the member's raft log and state in the metadata database.
//! - [`node`]: the raft thread. It owns the raft state machine, persists and applies, and
//!   answers proposals once their entry is applied on this member.
//! - [`transport`]: batched raft messages between members over gRPC on the peer URL
//!   (`placementpb.MemberRaft`), and the `Join` call a new member makes.
//! - [`filter`]: filters tests put on a member's outgoing raft messages.
//! - [`lease`]: the leader lease timestamps are handed out under.
//!
//! [`Shared`] is what the rest of the server reads: who leads, which members exist and their
//! URLs, and whether this member is serving as leader. A member serves (gRPC beyond
//! `GetMembers`, HTTP writes, the TSO) only once it leads and has reloaded the metadata that
//! was committed before its term ([`crate::state::Placement`] does the reload).
//!
//! Membership: the members named by `initial-cluster` start from one configuration. A member
//! started later (scale out) finds the leader through the others and asks it to add it; it then
//! catches up from a snapshot. Members are removed through `DELETE /pd/api/v1/members/name/{n}`.

pub mod filter;
pub mod lease;
pub mod log;
pub mod node;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;
use proto::pdpb;
use proto::placementpb::MemberInfo;
use tokio::sync::watch;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::meta::StoredMeta;

/// What the raft thread tells the server about its role.
#[derive(Debug)]
pub enum Event {
    /// This member leads `term` and has applied everything committed before it: the
    /// metadata it holds is complete.
    Lead { term: u64, stored: Box<StoredMeta> },
    /// This member no longer leads.
    Follow,
}

/// The raft id of a member: a stable hash of its name, never 0, so every member computes the
/// same ids from `initial-cluster` without coordination.
pub fn member_id(name: &str) -> u64 {
    (fnv1a(name.as_bytes()) >> 1) | 1
}

/// FNV-1a: stable across Rust releases and machines, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A cluster id derived from the initial configuration, so that members started together
/// agree on it without talking.
pub fn derived_cluster_id(initial: &[MemberInfo]) -> u64 {
    let mut names: Vec<String> = initial
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_urls.join("|")))
        .collect();
    names.sort();
    fnv1a(names.join(",").as_bytes()).max(1)
}

/// Parses `initial-cluster` (`name=url[,name=url...]`, as PD and etcd write it).
pub fn parse_initial_cluster(spec: &str) -> Result<Vec<MemberInfo>> {
    let bad = |reason: String| Error::Config {
        field: "initial-cluster",
        reason,
    };
    let mut out: Vec<MemberInfo> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("`{part}` is not name=peer-url")))?;
        let (name, url) = (name.trim(), url.trim());
        if name.is_empty() || url.is_empty() {
            return Err(bad(format!("`{part}` is not name=peer-url")));
        }
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(bad(format!("peer URL `{url}` must start with http://")));
        }
        let id = member_id(name);
        match out.iter_mut().find(|m| m.id == id) {
            Some(m) if m.name == name => m.peer_urls.push(url.to_owned()),
            Some(m) => {
                return Err(bad(format!(
                    "names `{}` and `{name}` hash to the same member id",
                    m.name
                )))
            }
            None => out.push(MemberInfo {
                id,
                name: name.to_owned(),
                client_urls: Vec::new(),
                peer_urls: vec![url.to_owned()],
            }),
        }
    }
    Ok(out)
}

/// Who this member is and whom it starts with.
#[derive(Debug, Clone)]
pub struct Setup {
    pub me: MemberInfo,
    /// The initial configuration (this member included); just this member when
    /// `initial-cluster` is unset.
    pub initial: Vec<MemberInfo>,
}

impl Setup {
    /// From the config and the advertised client URLs.
    pub fn from_config(config: &Config, client_urls: Vec<String>) -> Result<Setup> {
        let me = MemberInfo {
            id: member_id(&config.name),
            name: config.name.clone(),
            client_urls,
            peer_urls: config.peer_urls(),
        };
        let mut initial = match &config.initial_cluster {
            Some(spec) => parse_initial_cluster(spec)?,
            None => Vec::new(),
        };
        if initial.is_empty() {
            initial.push(me.clone());
        } else if !initial.iter().any(|m| m.id == me.id) {
            return Err(Error::Config {
                field: "initial-cluster",
                reason: format!("does not list this member `{}`", config.name),
            });
        }
        Ok(Setup { me, initial })
    }

    /// More than one member: raft traffic and the peer port are needed.
    pub fn is_group(&self) -> bool {
        self.initial.len() > 1
    }
}

/// Role and membership, shared between the raft thread and the server.
pub struct Shared {
    me: MemberInfo,
    /// When each peer was last heard from (a raft batch or an answer to one).
    heard: parking_lot::Mutex<BTreeMap<u64, std::time::Instant>>,
    members: RwLock<BTreeMap<u64, MemberInfo>>,
    voters: RwLock<Vec<u64>>,
    leader_id: AtomicU64,
    term: AtomicU64,
    raft_leader: AtomicBool,
    /// The term this member serves as leader in, 0 when it does not serve.
    serving: watch::Sender<u64>,
    /// Until when this leader may hand out timestamps (see [`lease`]).
    lease: parking_lot::Mutex<lease::Lease>,
    /// This leader is handing leadership over (the transferee may be elected any moment).
    handing_over: AtomicBool,
    /// Bumped on every change of role, lease, hand-over or serving term: what
    /// [`Shared::wait_for`] waits on instead of polling.
    changes: watch::Sender<u64>,
}

impl Shared {
    pub fn new(setup: &Setup) -> Shared {
        let mut members: BTreeMap<u64, MemberInfo> =
            setup.initial.iter().map(|m| (m.id, m.clone())).collect();
        members.insert(setup.me.id, setup.me.clone());
        Shared {
            me: setup.me.clone(),
            heard: parking_lot::Mutex::new(BTreeMap::new()),
            voters: RwLock::new(setup.initial.iter().map(|m| m.id).collect()),
            members: RwLock::new(members),
            leader_id: AtomicU64::new(0),
            term: AtomicU64::new(0),
            raft_leader: AtomicBool::new(false),
            serving: watch::channel(0).0,
            lease: parking_lot::Mutex::new(lease::Lease::default()),
            handing_over: AtomicBool::new(false),
            changes: watch::channel(0).0,
        }
    }

    /// Wakes [`Shared::wait_for`]ers to look again.
    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until `done` holds, looking at once and after every change of role, lease,
    /// hand-over or serving term, for at most `within`; whether it holds in the end.
    pub async fn wait_for(
        &self,
        within: std::time::Duration,
        done: impl Fn(&Shared) -> bool,
    ) -> bool {
        let mut rx = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            rx.borrow_and_update();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return done(self);
            }
        }
    }

    pub fn me(&self) -> &MemberInfo {
        &self.me
    }

    pub fn id(&self) -> u64 {
        self.me.id
    }

    /// Records what a peer says about itself (its URLs).
    pub fn learn(&self, info: &MemberInfo) {
        if info.id == 0 || info.id == self.me.id {
            return;
        }
        self.heard.lock().insert(info.id, std::time::Instant::now());
        // Called for every raft batch and answer: take the write lock only for news.
        if self.members.read().get(&info.id) == Some(info) {
            return;
        }
        self.members.write().insert(info.id, info.clone());
    }

    /// Takes the client URLs another member relays for `info`, for a member this one knows but
    /// has no client URLs of yet. What a member says about itself ([`learn`](Self::learn))
    /// stays authoritative; relayed news neither adds members nor counts as hearing from one.
    pub fn learn_relayed(&self, info: &MemberInfo) {
        if info.id == self.me.id || info.client_urls.is_empty() {
            return;
        }
        let needed = |m: Option<&MemberInfo>| m.is_some_and(|m| m.client_urls.is_empty());
        if !needed(self.members.read().get(&info.id)) {
            return;
        }
        let mut members = self.members.write();
        if let Some(m) = members
            .get_mut(&info.id)
            .filter(|m| m.client_urls.is_empty())
        {
            m.client_urls = info.client_urls.clone();
        }
    }

    /// The other members whose client URLs this member knows, to relay to its peers.
    pub fn known_peers(&self) -> Vec<MemberInfo> {
        self.members
            .read()
            .values()
            .filter(|m| m.id != self.me.id && !m.client_urls.is_empty())
            .cloned()
            .collect()
    }

    /// Whether a member was heard from within `within` (always true for this member).
    pub fn is_healthy(&self, id: u64, within: std::time::Duration) -> bool {
        id == self.me.id
            || self
                .heard
                .lock()
                .get(&id)
                .is_some_and(|t| t.elapsed() <= within)
    }

    pub fn peer_url(&self, id: u64) -> Option<String> {
        self.members
            .read()
            .get(&id)
            .and_then(|m| m.peer_urls.first().cloned())
    }

    pub fn member_by_name(&self, name: &str) -> Option<MemberInfo> {
        self.members
            .read()
            .values()
            .find(|m| m.name == name)
            .cloned()
    }

    pub(crate) fn set_voters(&self, voters: Vec<u64>) {
        *self.voters.write() = voters;
    }

    pub fn voters(&self) -> Vec<u64> {
        self.voters.read().clone()
    }

    pub fn is_voter(&self, id: u64) -> bool {
        self.voters.read().contains(&id)
    }

    /// The members of the current configuration.
    pub fn members(&self) -> Vec<MemberInfo> {
        let voters = self.voters();
        let members = self.members.read();
        voters
            .iter()
            .map(|id| {
                members.get(id).cloned().unwrap_or(MemberInfo {
                    id: *id,
                    ..Default::default()
                })
            })
            .collect()
    }

    /// Publishes the role the raft thread sees. A member that stops leading, or leads a new
    /// term, stops serving and loses its lease.
    pub(crate) fn set_role(&self, leader_id: u64, term: u64, raft_leader: bool) {
        self.leader_id.store(leader_id, Ordering::Release);
        let old_term = self.term.swap(term, Ordering::AcqRel);
        self.raft_leader.store(raft_leader, Ordering::Release);
        if !raft_leader || old_term != term {
            self.serving
                .send_if_modified(|s| std::mem::replace(s, 0) != 0);
            self.revoke_lease();
        }
        if !raft_leader {
            self.set_handing_over(false);
        }
        self.changed();
    }

    /// A quorum confirmed this leader's leadership in a round sent at `sent`: it may hand
    /// out timestamps until `until` (see [`lease::Lease::extend`]).
    pub(crate) fn extend_lease(&self, sent: std::time::Instant, until: std::time::Instant) {
        if self.is_raft_leader() {
            self.lease.lock().extend(sent, until);
            self.changed();
        }
    }

    /// Ends the lease at once (a leadership transfer starts, leadership is lost).
    pub(crate) fn revoke_lease(&self) {
        self.lease.lock().revoke(std::time::Instant::now());
        self.changed();
    }

    pub(crate) fn set_handing_over(&self, handing_over: bool) {
        self.handing_over.store(handing_over, Ordering::Release);
        self.changed();
    }

    /// This leader is handing leadership over to another member.
    pub fn is_handing_over(&self) -> bool {
        self.handing_over.load(Ordering::Acquire)
    }

    /// Whether this leader's lease holds now: no other member can have been elected.
    pub fn has_lease(&self) -> bool {
        self.is_raft_leader()
            && !self.is_handing_over()
            && self.lease.lock().holds(std::time::Instant::now())
    }

    /// Whether this member may hand out a timestamp now, for a request it took in `term`:
    /// it still serves as leader of that very term and holds its lease.
    pub fn may_hand_out_timestamps(&self, term: u64) -> bool {
        term != 0 && self.serving_term() == term && self.term() == term && self.has_lease()
    }

    /// The leader's raft id, 0 while unknown.
    pub fn leader_id(&self) -> u64 {
        self.leader_id.load(Ordering::Acquire)
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    /// This member is the raft leader (it may still be reloading).
    pub fn is_raft_leader(&self) -> bool {
        self.raft_leader.load(Ordering::Acquire)
    }

    /// The leader, when known and its client URLs are known.
    pub fn leader(&self) -> Option<MemberInfo> {
        let id = self.leader_id();
        if id == 0 {
            return None;
        }
        self.members.read().get(&id).cloned()
    }

    /// Marks this member serving as leader of `term`, if it still leads that term.
    pub fn start_serving(&self, term: u64) -> bool {
        if self.is_raft_leader() && self.term() == term {
            self.serving.send_replace(term);
            self.changed();
            true
        } else {
            false
        }
    }

    /// Watches the serving term (0 while not serving).
    pub fn serving_watch(&self) -> watch::Receiver<u64> {
        self.serving.subscribe()
    }

    /// The term this member serves in, or 0.
    pub fn serving_term(&self) -> u64 {
        *self.serving.borrow()
    }

    pub fn is_serving(&self) -> bool {
        self.serving_term() != 0
    }

    /// Resolves once this member stops serving the term it serves now (at once if it does
    /// not serve).
    pub async fn stopped_serving(&self) {
        let mut rx = self.serving.subscribe();
        let term = *rx.borrow_and_update();
        if term == 0 {
            return;
        }
        let _ = rx.wait_for(|t| *t != term).await;
    }

    /// The error a non-serving member answers with.
    pub fn not_leader(&self) -> Error {
        let leader = match self.leader() {
            Some(m) if m.id == self.me.id => "this member, still taking over".to_owned(),
            Some(m) => format!(
                "{} at {}",
                m.name,
                m.client_urls
                    .first()
                    .map_or("an unknown URL", |u| u.as_str())
            ),
            None => "not elected yet".to_owned(),
        };
        Error::NotLeader { leader }
    }
}

/// A member as `pdpb` reports it.
pub fn to_pd_member(m: &MemberInfo, version: &str) -> pdpb::Member {
    pdpb::Member {
        name: m.name.clone(),
        member_id: m.id,
        peer_urls: m.peer_urls.clone(),
        client_urls: m.client_urls.clone(),
        binary_version: version.to_owned(),
        ..Default::default()
    }
}

/// `initial-cluster` in the URL form the config carries (for messages).
pub fn describe(members: &[MemberInfo]) -> String {
    members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_urls.join("|")))
        .collect::<Vec<_>>()
        .join(",")
}

/// raft-rs's logger for the member group: its records in `tracing` (target `raft`), with
/// elections and membership at info (one group, so they are worth reading).
pub fn raft_logger() -> slog::Logger {
    raftkit::raft_logger(tracing::Level::INFO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_stable_and_distinct() {
        assert_eq!(member_id("pd-0"), member_id("pd-0"));
        assert_ne!(member_id("pd-0"), member_id("pd-1"));
        assert_ne!(member_id(""), 0);
    }

    #[test]
    fn parses_initial_cluster() {
        let m =
            parse_initial_cluster("a=http://h1:2380, b=http://h2:2380,a=http://h1b:2380").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].peer_urls, vec!["http://h1:2380", "http://h1b:2380"]);
        assert_eq!(m[1].id, member_id("b"));
        for bad in ["a", "=http://x", "a=", "a=h1:2380"] {
            let err = parse_initial_cluster(bad).unwrap_err().to_string();
            assert!(err.contains("initial-cluster"), "{bad}: {err}");
        }
    }

    #[test]
    fn relayed_client_urls_fill_gaps_only() {
        let initial =
            parse_initial_cluster("a=http://h1:2380,b=http://h2:2380,c=http://h3:2380").unwrap();
        let mut me = initial[0].clone();
        me.client_urls = vec!["http://h1:2379".into()];
        let shared = Shared::new(&Setup {
            me,
            initial: initial.clone(),
        });
        let urls = |id: u64| {
            let members = shared.members();
            members
                .into_iter()
                .find(|m| m.id == id)
                .unwrap()
                .client_urls
        };
        let with_url = |m: &MemberInfo, url: &str| MemberInfo {
            client_urls: vec![url.to_owned()],
            ..m.clone()
        };
        // b speaks for itself; c is only relayed (by b), twice with different URLs.
        shared.learn(&with_url(&initial[1], "http://h2:2379"));
        shared.learn_relayed(&with_url(&initial[2], "http://h3:2379"));
        shared.learn_relayed(&with_url(&initial[2], "http://stale:2379"));
        shared.learn_relayed(&with_url(&initial[1], "http://stale:2379"));
        assert_eq!(
            urls(initial[1].id),
            vec!["http://h2:2379"],
            "b's own word stands"
        );
        assert_eq!(
            urls(initial[2].id),
            vec!["http://h3:2379"],
            "c's gap filled once"
        );
        assert!(!shared.is_healthy(initial[2].id, std::time::Duration::from_secs(60)));
        // Unknown members are not added by hearsay; relays name the others, not oneself.
        shared.learn_relayed(&with_url(
            &MemberInfo {
                id: 99,
                ..Default::default()
            },
            "http://x",
        ));
        assert!(shared.members().iter().all(|m| m.id != 99));
        let known: Vec<u64> = shared.known_peers().iter().map(|m| m.id).collect();
        assert_eq!(known, {
            let mut ids = vec![initial[1].id, initial[2].id];
            ids.sort();
            ids
        });
    }

    #[test]
    fn derived_cluster_id_ignores_order() {
        let a = parse_initial_cluster("a=http://h1:2380,b=http://h2:2380").unwrap();
        let b = parse_initial_cluster("b=http://h2:2380,a=http://h1:2380").unwrap();
        assert_eq!(derived_cluster_id(&a), derived_cluster_id(&b));
        let c = parse_initial_cluster("a=http://h1:2380,c=http://h2:2380").unwrap();
        assert_ne!(derived_cluster_id(&a), derived_cluster_id(&c));
    }
}
