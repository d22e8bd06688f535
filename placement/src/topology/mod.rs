//! Store topology from Kubernetes (`[topology] source = "kubernetes"`).
//!
//! On Kubernetes a store's place in the failure-domain hierarchy is already written down:
//! its pod runs on a node labelled `topology.kubernetes.io/region`, `topology.kubernetes.io/zone`
//! and `kubernetes.io/hostname`. Instead of asking every store to be configured with the same
//! facts, placement reads them through the Kubernetes API and gives them to the store as the
//! `region`, `zone` and `host` labels that `location-labels` schedules on.
//!
//! - [`labels`]: the pure rules. Which pod a store address names ([`locate`]), which labels a
//!   pod and its node imply ([`derive_labels`]; the pod's own topology labels override its
//!   node's), and how they combine with the store's ([`merge_labels`]).
//! - [`TopologySource`]: looks a store up; [`KubernetesTopology`] does it with `kube`
//!   (`Api<Pod>`, `Api<Node>`), tests use fakes or a mocked API server.
//! - [`sync`]: the task that keeps every store's labels current, started by
//!   [`crate::server::start`] only with `source = "kubernetes"`.
//!
//! **Precedence.** A label the store registered itself always wins: Kubernetes only fills
//! the keys the store did not set. The sync task remembers which labels it derived, so when
//! a pod moves to a node with other labels the old derived values are replaced, never the
//! store's own. That memory is in-process: after placement restarts, a stored value that
//! differs from what Kubernetes now says is kept as the store's own until the store
//! registers again (a store re-registers on every start, and a pod that moved has
//! restarted).

pub mod kubernetes;
pub mod labels;
pub mod sync;

use futures::future::BoxFuture;
use proto::metapb;

pub use kubernetes::KubernetesTopology;
pub use labels::{derive_labels, locate, merge_labels, Labels, Merged, NamespaceHint, PodLocator};
pub use sync::{spawn_sync, TopologySync};

/// What a lookup found for one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTopology {
    /// `namespace/name` of the store's pod.
    pub pod: String,
    /// The node the pod runs on, if scheduled.
    pub node: Option<String>,
    /// The store labels the pod and node imply ([`derive_labels`]).
    pub labels: Labels,
}

/// Why a store's topology could not be read this time. The sync task logs it and retries
/// on its next round.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The store's address does not lead to a pod.
    #[error("store address `{address}` names no pod: {reason}")]
    BadAddress { address: String, reason: String },

    /// The Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),

    /// The pod names a node the API does not know.
    #[error("node `{node}` of pod `{pod}` not found")]
    NodeNotFound { node: String, pod: String },

    /// Several live pods have the store's IP and imply different labels.
    #[error("pods {pods:?} all have IP {ip}; cannot tell which is the store")]
    AmbiguousIp { ip: String, pods: Vec<String> },
}

/// Looks up the topology of a store. Implemented by [`KubernetesTopology`]; a trait so the
/// sync task can be driven by a fake in tests.
pub trait TopologySource: Send + Sync {
    /// The topology of `store`'s pod; `Ok(None)` when the pod does not exist.
    fn lookup<'a>(
        &'a self,
        store: &'a metapb::Store,
    ) -> BoxFuture<'a, Result<Option<PodTopology>, TopologyError>>;
}
