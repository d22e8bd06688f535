//! [`TopologySync`]: keeps every store's labels in line with what its pod and node say.
//!
//! [`spawn_sync`] runs it as a task: a full round over every non-tombstone store each
//! `refresh-interval`, and in between, every [`CHANGE_POLL`], a round over just the stores
//! that registered or re-registered since it last looked (a re-registration replaces a
//! store's labels with its own, so the derived ones are put back at once). A changed label
//! set is committed through [`Placement::commit`] with the same plan a `PutStore` uses, so
//! it is validated, persisted and applied like one.
//!
//! Lookup failures never stop the task: the first failure of a store is logged as a warning,
//! repeats of the same failure at debug level, and the store is retried next round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto::metapb;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::labels::{merge_labels, Labels};
use super::{PodTopology, TopologySource};
use crate::error::Error;
use crate::state::Placement;

/// How often the task checks for newly registered stores between full rounds.
pub const CHANGE_POLL: Duration = Duration::from_millis(500);

/// How long one store's lookup may take before it counts as failed.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What one store's sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Labels were changed and committed.
    Updated,
    /// Labels already matched.
    Unchanged,
    /// The store's pod does not exist; labels left as they are.
    PodNotFound,
    /// The lookup or the commit failed; labels left as they are.
    Failed(String),
    /// The store changed (address, tombstone) while being looked up; next round.
    Skipped,
}

/// Per-store memory of the sync task.
#[derive(Debug, Default)]
struct Tracked {
    /// The labels Kubernetes gave the store last time ([`merge_labels`]' `previous`).
    derived: Option<Labels>,
    /// Address and labels of the store as last seen, to notice re-registrations.
    seen: Option<(String, Vec<metapb::StoreLabel>)>,
    /// The last failure logged for the store, to log repeats quietly.
    failing: Option<String>,
}

/// The label synchronizer: holds what it derived for each store.
pub struct TopologySync {
    state: Arc<Placement>,
    source: Arc<dyn TopologySource>,
    stores: HashMap<u64, Tracked>,
}

impl TopologySync {
    /// A synchronizer for `state`'s stores reading topology from `source`.
    pub fn new(state: Arc<Placement>, source: Arc<dyn TopologySource>) -> Self {
        TopologySync {
            state,
            source,
            stores: HashMap::new(),
        }
    }

    /// Syncs every non-tombstone store once. Returns each store's outcome, by id.
    pub async fn round(&mut self) -> Vec<(u64, Outcome)> {
        let stores = self.live_stores();
        self.stores
            .retain(|id, _| stores.iter().any(|s| s.id == *id));
        self.sync_all(stores).await
    }

    /// Syncs the stores that registered, re-registered or changed labels since this
    /// synchronizer last looked at them.
    pub async fn sync_changed(&mut self) -> Vec<(u64, Outcome)> {
        let changed: Vec<metapb::Store> = self
            .live_stores()
            .into_iter()
            .filter(|s| {
                self.stores.get(&s.id).and_then(|t| t.seen.as_ref())
                    != Some(&(s.address.clone(), s.labels.clone()))
            })
            .collect();
        self.sync_all(changed).await
    }

    fn live_stores(&self) -> Vec<metapb::Store> {
        let view = self.state.view();
        if !view.is_bootstrapped() {
            return Vec::new();
        }
        view.stores()
            .filter(|s| !s.is_tombstone())
            .map(|s| s.meta.clone())
            .collect()
    }

    async fn sync_all(&mut self, stores: Vec<metapb::Store>) -> Vec<(u64, Outcome)> {
        let mut out = Vec::with_capacity(stores.len());
        for store in stores {
            let outcome = self.sync_store(&store).await;
            out.push((store.id, outcome));
        }
        out
    }

    /// Looks `store` up and commits its labels if they change.
    async fn sync_store(&mut self, store: &metapb::Store) -> Outcome {
        let id = store.id;
        let metrics = &self.state.metrics;
        let looked_up = tokio::time::timeout(LOOKUP_TIMEOUT, self.source.lookup(store)).await;
        let tracked = self.stores.entry(id).or_default();
        tracked.seen = Some((store.address.clone(), store.labels.clone()));
        let topology = match looked_up {
            Ok(Ok(Some(t))) => t,
            Ok(Ok(None)) => {
                metrics.topology_lookup("not_found");
                let reason = "pod not found; labels left unchanged".to_owned();
                log_failure(tracked, id, &store.address, &reason);
                return Outcome::PodNotFound;
            }
            Ok(Err(e)) => {
                metrics.topology_lookup("error");
                let reason = e.to_string();
                log_failure(tracked, id, &store.address, &reason);
                return Outcome::Failed(reason);
            }
            Err(_) => {
                metrics.topology_lookup("error");
                let reason = format!("lookup took longer than {LOOKUP_TIMEOUT:?}");
                log_failure(tracked, id, &store.address, &reason);
                return Outcome::Failed(reason);
            }
        };
        metrics.topology_lookup("ok");
        let previous = tracked.derived.clone();
        let committed = self
            .state
            .commit(|view| plan_labels(view, store, previous.as_ref(), &topology))
            .await;
        let tracked = self.stores.entry(id).or_default();
        match committed {
            Ok(Planned::Skipped) => Outcome::Skipped,
            Ok(Planned::Unchanged { derived, current }) => {
                recovered(tracked, id, &topology);
                tracked.derived = Some(derived);
                tracked.seen = Some((store.address.clone(), current));
                Outcome::Unchanged
            }
            Ok(Planned::Changed { derived, old, new }) => {
                recovered(tracked, id, &topology);
                tracing::info!(
                    store_id = id,
                    pod = %topology.pod,
                    node = topology.node.as_deref().unwrap_or("-"),
                    old = %format_labels(&old),
                    new = %format_labels(&new),
                    "store labels updated from Kubernetes"
                );
                self.state.metrics.topology_label_updates.inc();
                tracked.derived = Some(derived);
                tracked.seen = Some((store.address.clone(), new));
                Outcome::Updated
            }
            Err(e) => {
                let reason = format!("updating labels failed: {e}");
                log_failure(tracked, id, &store.address, &reason);
                Outcome::Failed(reason)
            }
        }
    }
}

/// What [`plan_labels`] decided.
enum Planned {
    Skipped,
    Unchanged {
        derived: Labels,
        current: Vec<metapb::StoreLabel>,
    },
    Changed {
        derived: Labels,
        old: Vec<metapb::StoreLabel>,
        new: Vec<metapb::StoreLabel>,
    },
}

/// Plans the label change of `looked_up` against the current view, as `PutStore` would.
fn plan_labels(
    view: &crate::cluster::ClusterView,
    looked_up: &metapb::Store,
    previous: Option<&Labels>,
    topology: &PodTopology,
) -> crate::Result<(Planned, Vec<crate::meta::MetaWrite>)> {
    let info = match view.store(looked_up.id) {
        Ok(info) => info,
        Err(Error::StoreNotFound(_)) => return Ok((Planned::Skipped, Vec::new())),
        Err(e) => return Err(e),
    };
    // Removed, or re-registered elsewhere while we looked: the next round looks again.
    if info.is_tombstone() || info.meta.address != looked_up.address {
        return Ok((Planned::Skipped, Vec::new()));
    }
    let merged = merge_labels(&info.meta.labels, previous, &topology.labels);
    if !merged.changes(&info.meta.labels) {
        let current = info.meta.labels.clone();
        return Ok((
            Planned::Unchanged {
                derived: merged.derived,
                current,
            },
            Vec::new(),
        ));
    }
    let mut meta = info.meta.clone();
    meta.labels = merged.labels.clone();
    let writes = view.plan_put_store(&meta)?;
    Ok((
        Planned::Changed {
            derived: merged.derived,
            old: info.meta.labels.clone(),
            new: merged.labels,
        },
        writes,
    ))
}

fn log_failure(tracked: &mut Tracked, store_id: u64, address: &str, reason: &str) {
    if tracked.failing.as_deref() == Some(reason) {
        tracing::debug!(
            store_id,
            address,
            reason,
            "store topology lookup still failing"
        );
    } else {
        tracing::warn!(
            store_id,
            address,
            reason,
            "store topology lookup failed; will retry"
        );
        tracked.failing = Some(reason.to_owned());
    }
}

fn recovered(tracked: &mut Tracked, store_id: u64, topology: &PodTopology) {
    if tracked.failing.take().is_some() {
        tracing::info!(store_id, pod = %topology.pod, "store topology lookup works again");
    }
}

/// `zone=z1,host=h1`.
fn format_labels(labels: &[metapb::StoreLabel]) -> String {
    labels
        .iter()
        .map(|l| format!("{}={}", l.key, l.value))
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts the sync task: a full round at once and every `interval`, stores that
/// (re-)registered within [`CHANGE_POLL`]. Only the serving leader of a placement group
/// syncs (a member that starts to lead does a full round first). It ends when `state`
/// begins shutting down.
pub fn spawn_sync(
    state: Arc<Placement>,
    source: Arc<dyn TopologySource>,
    interval: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut sync = TopologySync::new(state.clone(), source);
        let mut next_full = Instant::now();
        let mut seen_revision = None;
        loop {
            let now = Instant::now();
            if !state.is_leader() {
                // Followers hold no current view; the next leader starts with a full round.
                next_full = now;
            } else if now >= next_full {
                seen_revision = Some(state.revision());
                sync.round().await;
                next_full = Instant::now() + interval;
            } else if seen_revision != Some(state.revision()) {
                seen_revision = Some(state.revision());
                sync.sync_changed().await;
            }
            let wait = next_full
                .saturating_duration_since(Instant::now())
                .min(CHANGE_POLL);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = state.shutting_down() => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use futures::future::BoxFuture;
    use futures::FutureExt;
    use parking_lot::Mutex;

    use super::*;
    use crate::config::Config;
    use crate::meta::MetaWrite;
    use crate::topology::TopologyError;

    /// A fake topology source: answers from a table by store address.
    #[derive(Default)]
    struct FakeSource {
        answers: Mutex<HashMap<String, Result<Option<Labels>, String>>>,
        calls: Mutex<usize>,
    }

    impl FakeSource {
        /// The pod of the store at `address` implies `pairs`.
        fn found(&self, address: &str, pairs: &[(&str, &str)]) {
            let answer = Ok(Some(labels(pairs)));
            self.answers.lock().insert(address.to_owned(), answer);
        }

        /// The store at `address` has no pod.
        fn missing(&self, address: &str) {
            self.answers.lock().insert(address.to_owned(), Ok(None));
        }

        /// Looking up the store at `address` fails with `reason`.
        fn fail(&self, address: &str, reason: &str) {
            let answer = Err(reason.to_owned());
            self.answers.lock().insert(address.to_owned(), answer);
        }
    }

    impl TopologySource for FakeSource {
        fn lookup<'a>(
            &'a self,
            store: &'a metapb::Store,
        ) -> BoxFuture<'a, Result<Option<PodTopology>, TopologyError>> {
            *self.calls.lock() += 1;
            let answer = self.answers.lock().get(&store.address).cloned();
            async move {
                match answer {
                    Some(Ok(Some(labels))) => Ok(Some(PodTopology {
                        pod: format!("db/{}", store.address),
                        node: labels.get("host").cloned(),
                        labels,
                    })),
                    Some(Ok(None)) | None => Ok(None),
                    Some(Err(reason)) => Err(TopologyError::BadAddress {
                        address: store.address.clone(),
                        reason,
                    }),
                }
            }
            .boxed()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn store(id: u64, own: &[(&str, &str)]) -> metapb::Store {
        metapb::Store {
            id,
            address: format!("s-{id}.peer.db.svc:20160"),
            labels: own
                .iter()
                .map(|(k, v)| metapb::StoreLabel {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn stored_labels(state: &Placement, id: u64) -> Labels {
        state
            .view()
            .store(id)
            .unwrap()
            .meta
            .labels
            .iter()
            .map(|l| (l.key.clone(), l.value.clone()))
            .collect()
    }

    async fn put_store(state: &Placement, s: metapb::Store) {
        state
            .commit(|view| Ok(((), view.plan_put_store(&s)?)))
            .await
            .unwrap();
    }

    /// A bootstrapped placement (store 1 first) in `dir`.
    async fn placement(dir: &std::path::Path) -> Arc<Placement> {
        let config = Config {
            data_dir: Some(dir.to_path_buf()),
            ..Config::default()
        };
        let state = Placement::open(config, vec!["http://127.0.0.1:2379".into()])
            .await
            .unwrap();
        let first = store(1, &[]);
        let region = metapb::Region {
            id: 100,
            peers: vec![metapb::Peer {
                id: 101,
                store_id: 1,
                ..Default::default()
            }],
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            ..Default::default()
        };
        state
            .commit(|view| Ok(((), view.plan_bootstrap(&first, &region, 3)?)))
            .await
            .unwrap();
        state
    }

    #[tokio::test]
    async fn derives_moves_and_keeps_store_labels() {
        let dir = tempfile::tempdir().unwrap();
        let state = placement(dir.path()).await;
        put_store(&state, store(2, &[("zone", "pinned"), ("disk", "ssd")])).await;
        let fake = Arc::new(FakeSource::default());
        let s1 = store(1, &[]).address;
        let s2 = store(2, &[]).address;
        fake.found(&s1, &[("zone", "z1"), ("host", "n1")]);
        fake.found(&s2, &[("zone", "z2"), ("host", "n2")]);
        let mut sync = TopologySync::new(state.clone(), fake.clone());

        let outcomes = sync.round().await;
        assert_eq!(outcomes, vec![(1, Outcome::Updated), (2, Outcome::Updated)]);
        assert_eq!(
            stored_labels(&state, 1),
            labels(&[("zone", "z1"), ("host", "n1")])
        );
        // The store's own zone wins; only the host is filled in.
        assert_eq!(
            stored_labels(&state, 2),
            labels(&[("zone", "pinned"), ("disk", "ssd"), ("host", "n2")])
        );
        assert_eq!(state.metrics.topology_label_updates.get(), 2);

        // Nothing changed in Kubernetes: nothing is written.
        let revision = state.revision();
        assert_eq!(
            sync.round().await,
            vec![(1, Outcome::Unchanged), (2, Outcome::Unchanged)]
        );
        assert_eq!(state.revision(), revision);

        // Store 1's pod moved to a node in another zone that has no host label value.
        fake.found(&s1, &[("zone", "z3")]);
        sync.round().await;
        assert_eq!(stored_labels(&state, 1), labels(&[("zone", "z3")]));
        assert_eq!(state.metrics.topology_label_updates.get(), 3);

        // The labels were persisted like a PutStore: a reopened placement has them.
        let writer = state.writer.clone();
        tokio::task::spawn_blocking(move || writer.close())
            .await
            .unwrap();
        let config = Config {
            data_dir: Some(dir.path().to_path_buf()),
            ..Config::default()
        };
        let reopened = Placement::open(config, vec![]).await.unwrap();
        assert_eq!(stored_labels(&reopened, 1), labels(&[("zone", "z3")]));
        assert_eq!(
            stored_labels(&reopened, 2),
            labels(&[("zone", "pinned"), ("disk", "ssd"), ("host", "n2")])
        );
    }

    #[tokio::test]
    async fn failures_leave_labels_and_retry() {
        let dir = tempfile::tempdir().unwrap();
        let state = placement(dir.path()).await;
        let fake = Arc::new(FakeSource::default());
        let s1 = store(1, &[]).address;
        fake.found(&s1, &[("zone", "z1")]);
        let mut sync = TopologySync::new(state.clone(), fake.clone());
        sync.round().await;
        assert_eq!(stored_labels(&state, 1), labels(&[("zone", "z1")]));

        fake.missing(&s1);
        assert_eq!(sync.round().await, vec![(1, Outcome::PodNotFound)]);
        fake.fail(&s1, "api unreachable");
        let outcomes = sync.round().await;
        assert!(
            matches!(&outcomes[..], [(1, Outcome::Failed(r))] if r.contains("api unreachable")),
            "{outcomes:?}"
        );
        assert_eq!(stored_labels(&state, 1), labels(&[("zone", "z1")]));
        assert_eq!(state.metrics.topology_lookups("not_found"), 1);
        assert_eq!(state.metrics.topology_lookups("error"), 1);

        // Retried next round once the API answers again.
        fake.found(&s1, &[("zone", "z2")]);
        assert_eq!(sync.round().await, vec![(1, Outcome::Updated)]);
        assert_eq!(stored_labels(&state, 1), labels(&[("zone", "z2")]));
    }

    #[tokio::test]
    async fn re_registration_is_synced_at_once_and_tombstones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let state = placement(dir.path()).await;
        let fake = Arc::new(FakeSource::default());
        for id in [1, 2] {
            fake.found(&store(id, &[]).address, &[("zone", "z1")]);
        }
        let mut sync = TopologySync::new(state.clone(), fake.clone());
        sync.round().await;
        assert!(sync.sync_changed().await.is_empty(), "nothing new yet");

        // Store 2 registers; store 1 restarts and registers with its own labels only.
        put_store(&state, store(2, &[])).await;
        put_store(&state, store(1, &[("disk", "nvme")])).await;
        assert_eq!(stored_labels(&state, 1), labels(&[("disk", "nvme")]));
        let outcomes = sync.sync_changed().await;
        assert_eq!(outcomes, vec![(1, Outcome::Updated), (2, Outcome::Updated)]);
        assert_eq!(
            stored_labels(&state, 1),
            labels(&[("disk", "nvme"), ("zone", "z1")])
        );
        assert_eq!(stored_labels(&state, 2), labels(&[("zone", "z1")]));

        // A tombstone is left alone.
        let mut tomb = state.view().store(2).unwrap().meta.clone();
        tomb.state = metapb::StoreState::Tombstone as i32;
        state
            .commit(|_| Ok(((), vec![MetaWrite::Store(tomb)])))
            .await
            .unwrap();
        let calls = *fake.calls.lock();
        assert_eq!(sync.round().await, vec![(1, Outcome::Unchanged)]);
        assert_eq!(*fake.calls.lock(), calls + 1);
    }
}
