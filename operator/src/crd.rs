//! The `TikvCluster` custom resource (`tikv.ferrokv.io/v1alpha1`): what a user asks for (spec)
//! and what the operator observed (status).
//!
//! These types are the single source of the CRD: `crdgen` prints `TikvCluster::crd()` and
//! `crds/tikvclusters.yaml` is committed from it. Validation that the API server can do on its
//! own lives here as schema keywords (minimums, patterns) and CEL rules
//! (`x-kubernetes-validations`) where a rule spans fields, so a malformed cluster is refused at
//! `kubectl apply` with a message naming the field, before the operator ever sees it.
//! Unknown fields are refused by the API server's strict field validation (structural schemas
//! carry no `x-kubernetes-preserve-unknown-fields` here).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every ferrokv resource.
pub const GROUP: &str = "tikv.ferrokv.io";

/// Finalizer the operator puts on every TikvCluster, so deleting one runs its cleanup
/// (volume claims under `pvReclaimPolicy: Delete`, the placement ClusterRoleBinding) first.
pub const FINALIZER: &str = "tikv.ferrokv.io/finalizer";

/// Default container image, holding both the `placement` and the `store` binaries.
pub const DEFAULT_IMAGE: &str = "ghcr.io/ferrokv/ferrokv";

/// Pattern for a positive Kubernetes quantity with an optional binary or decimal suffix
/// (`10Gi`, `500M`, `1.5Ti`). Signs and exponents are refused: a volume size is never negative.
pub const QUANTITY_PATTERN: &str = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[kMGTPE])?$";

/// Pattern for a duration written as PD writes it: `30s`, `3m`, `1h30m`, `500ms`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// A ferrokv cluster: placement members and storage nodes, reconciled into StatefulSets.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tikv.ferrokv.io",
    version = "v1alpha1",
    kind = "TikvCluster",
    plural = "tikvclusters",
    shortname = "tc",
    category = "ferrokv",
    namespaced,
    status = "TikvClusterStatus",
    derive = "PartialEq",
    doc = "A TiKV-compatible ferrokv cluster: placement members and store nodes",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Placement","type":"integer","description":"Ready placement members","jsonPath":".status.placement.readyReplicas"}"#,
    printcolumn = r#"{"name":"Stores","type":"integer","description":"Ready stores","jsonPath":".status.store.readyReplicas"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.paused || self.store.replicas >= self.maxReplicas").message(
    "store.replicas must be at least maxReplicas: placement cannot put maxReplicas copies of a region on fewer stores"
))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TikvClusterSpec {
    /// Version (image tag) of every component unless the component sets its own. Default:
    /// the operator's own version (`v0.1.0` for this release).
    #[serde(default = "default_version")]
    #[schemars(length(min = 1))]
    pub version: String,
    /// The placement (PD-compatible) members.
    #[serde(default)]
    pub placement: PlacementSpec,
    /// The storage nodes.
    #[serde(default)]
    pub store: StoreSpec,
    /// How stores are labelled and how far apart placement keeps a region's replicas.
    #[serde(default)]
    pub topology: TopologySpec,
    /// Copies of every region (placement's `max-replicas`). Default 3.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Most replacement store pods failover may add while stores are down. Default 3; 0 disables
    /// failover.
    #[serde(default = "default_max_failover_count")]
    #[schemars(range(min = 0))]
    pub max_failover_count: i32,
    /// Longest wait for a store's leaders to move away before its pod restarts anyway
    /// (`30s`, `3m`, `1h`). Default `3m`.
    #[serde(default = "default_evict_leader_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub evict_leader_timeout: String,
    /// How long a store may stay Disconnected before failover gives it a replacement pod
    /// (`30s`, `5m`, `1h`); a store placement reports Down fails over at once. Default `5m`.
    #[serde(default = "default_failover_period")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub failover_period: String,
    /// What happens to the pods' volume claims when the cluster is deleted: `Retain` (default)
    /// keeps them, `Delete` deletes them.
    #[serde(default)]
    pub pv_reclaim_policy: PvReclaimPolicy,
    /// Stop every change to the cluster's objects while true; status is still reported.
    #[serde(default)]
    pub paused: bool,
}

/// Fate of the data volume claims when a cluster is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PvReclaimPolicy {
    /// Keep the claims (and the data) after the cluster is gone.
    #[default]
    Retain,
    /// Delete the claims with the cluster.
    Delete,
}

/// The placement component: a StatefulSet of PD-compatible members.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Members. Default 1; use an odd number so a majority survives one loss.
    #[serde(default = "default_placement_replicas")]
    #[schemars(range(min = 1))]
    pub replicas: i32,
    #[serde(flatten)]
    pub common: ComponentSpec,
}

/// The store component: a StatefulSet of storage nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    /// Stores. Default 3; never fewer than `maxReplicas`.
    #[serde(default = "default_store_replicas")]
    #[schemars(range(min = 1))]
    pub replicas: i32,
    #[serde(flatten)]
    pub common: ComponentSpec,
}

/// Settings both components share.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Image repository (or a full reference with a tag or digest). Default
    /// `ghcr.io/ferrokv/ferrokv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Image tag for this component; default the cluster's `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub version: Option<String>,
    /// The data volume of each pod.
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory requests and limits of the main container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// TOML merged into the component's config file (the same keys as its `--config` file).
    /// Keys the operator owns (addresses, data dir, max-replicas, location-labels) win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Extra environment variables of the main container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Pod affinity; replaces the default anti-affinity when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Pod tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Pod topology spread; replaces the default spread by zone and host when non-empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Type of the client Service. Default `ClusterIP`.
    #[serde(default)]
    pub service_type: ServiceType,
}

/// The persistent volume behind each pod's data directory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(oldSelf.storageClassName) || (has(self.storageClassName) && self.storageClassName == oldSelf.storageClassName)").message("storageClassName cannot change once set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageSpec {
    /// Requested size, a Kubernetes quantity (`10Gi`). Default `10Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[kMGTPE])?$"))]
    pub size: String,
    /// StorageClass of the volume claims; default the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// Kubernetes Service types a client Service may take.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// Store location labels and the isolation placement enforces.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.isolationLevel) || self.isolationLevel in self.locationLabels").message("isolationLevel must be one of locationLabels"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopologySpec {
    /// Store label keys, outermost first (placement's `location-labels`). Default
    /// `["zone", "host"]`.
    #[serde(default = "default_location_labels")]
    #[schemars(length(min = 1, max = 8))]
    pub location_labels: Vec<String>,
    /// The label level no two replicas of a region may share (e.g. `zone`); unset means best
    /// effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub isolation_level: Option<String>,
}

/// What the operator last observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TikvClusterStatus {
    /// `Ready`, `Progressing` and `Degraded`, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub placement: PlacementStatus,
    #[serde(default)]
    pub store: StoreStatus,
    /// The store upgrade in flight: whose leaders are being evicted, since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeStatus>,
    /// Stores that may fail at once with every region keeping a voter majority, as placement
    /// reports it (`/pd/api/v1/fault-tolerance`, level `store`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_tolerance: Option<i32>,
}

/// A store pod about to restart during an upgrade, and the leader eviction before it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// StatefulSet ordinal of the pod.
    pub ordinal: i32,
    /// Its store, whose leaders placement is moving away.
    #[schemars(with = "i64", range(min = 0))]
    pub store_id: u64,
    /// When the evict-leader scheduler was added.
    pub evict_started_at: Time,
}

/// Replica counts of one component's StatefulSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub current_replicas: i32,
    #[serde(default)]
    pub updated_replicas: i32,
    /// Image the StatefulSet runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Placement members as placement itself reports them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStatus {
    #[serde(flatten)]
    pub replicas: ComponentStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<PlacementMember>,
    /// Name of the leading member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// One placement member.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementMember {
    pub name: String,
    /// Member id placement assigned (0 when not reported).
    #[serde(default)]
    #[schemars(with = "i64", range(min = 0))]
    pub member_id: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
    #[serde(default)]
    pub health: bool,
}

/// Stores as placement reports them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    #[serde(flatten)]
    pub replicas: ComponentStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<StoreInfo>,
    /// Stores failover gave a replacement pod; the StatefulSet runs one extra pod per entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_stores: Vec<FailureStore>,
}

/// A store failover is covering: down (or disconnected past `failoverPeriod`), with one extra
/// store pod added for it. Cleared once the store is Up again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureStore {
    /// The failed store.
    #[schemars(with = "i64", range(min = 0))]
    pub store_id: u64,
    /// The pod serving it.
    pub pod: String,
    /// When the operator recorded the failure.
    pub since: Time,
}

/// One store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreInfo {
    /// Store id placement assigned. Kubernetes knows no `uint64` format: the schema says int64.
    #[schemars(with = "i64", range(min = 0))]
    pub id: u64,
    /// Pod serving the store, when it is one of ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub address: String,
    /// `Up`, `Disconnected`, `Down`, `Offline` or `Tombstone`.
    pub state: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub leader_count: i64,
    #[serde(default)]
    pub region_count: i64,
    /// Last heartbeat placement received from the store, if it reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
}

/// The default image tag: this operator's own release (`v<version>`), the tag
/// `scripts/images.sh` builds, so a cluster runs the matching component version and never
/// depends on a moving `latest`.
fn default_version() -> String {
    concat!("v", env!("CARGO_PKG_VERSION")).into()
}
fn default_max_replicas() -> i32 {
    3
}
fn default_max_failover_count() -> i32 {
    3
}
fn default_evict_leader_timeout() -> String {
    "3m".into()
}
fn default_failover_period() -> String {
    "5m".into()
}
fn default_placement_replicas() -> i32 {
    1
}
fn default_store_replicas() -> i32 {
    3
}
fn default_storage_size() -> String {
    "10Gi".into()
}
fn default_location_labels() -> Vec<String> {
    vec!["zone".into(), "host".into()]
}

impl Default for PlacementSpec {
    fn default() -> Self {
        PlacementSpec {
            replicas: default_placement_replicas(),
            common: ComponentSpec::default(),
        }
    }
}

impl Default for StoreSpec {
    fn default() -> Self {
        StoreSpec {
            replicas: default_store_replicas(),
            common: ComponentSpec::default(),
        }
    }
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

impl Default for TopologySpec {
    fn default() -> Self {
        TopologySpec {
            location_labels: default_location_labels(),
            isolation_level: None,
        }
    }
}

impl Default for TikvClusterSpec {
    fn default() -> Self {
        TikvClusterSpec {
            version: default_version(),
            placement: PlacementSpec::default(),
            store: StoreSpec::default(),
            topology: TopologySpec::default(),
            max_replicas: default_max_replicas(),
            max_failover_count: default_max_failover_count(),
            evict_leader_timeout: default_evict_leader_timeout(),
            failover_period: default_failover_period(),
            pv_reclaim_policy: PvReclaimPolicy::Retain,
            paused: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    fn schema() -> serde_json::Value {
        let crd = serde_json::to_value(TikvCluster::crd()).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn crd_names_and_subresources() {
        let crd = TikvCluster::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.names.kind, "TikvCluster");
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let cols: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["Ready", "Placement", "Stores", "Age"]);
    }

    #[test]
    fn schema_carries_minimums_patterns_and_cel() {
        let s = schema();
        let spec = &s["properties"]["spec"];
        assert_eq!(
            spec["properties"]["maxReplicas"]["minimum"].as_f64(),
            Some(1.0)
        );
        assert_eq!(spec["properties"]["maxReplicas"]["default"], 3);
        assert_eq!(
            spec["properties"]["store"]["properties"]["replicas"]["minimum"].as_f64(),
            Some(1.0)
        );
        let size = &spec["properties"]["store"]["properties"]["storage"]["properties"]["size"];
        assert_eq!(size["pattern"], QUANTITY_PATTERN);
        assert_eq!(
            spec["properties"]["evictLeaderTimeout"]["pattern"],
            DURATION_PATTERN
        );
        assert_eq!(
            spec["properties"]["failoverPeriod"]["pattern"],
            DURATION_PATTERN
        );
        assert_eq!(spec["properties"]["failoverPeriod"]["default"], "5m");
        let policy = &spec["properties"]["pvReclaimPolicy"];
        assert_eq!(policy["enum"], serde_json::json!(["Retain", "Delete"]));
        assert_eq!(policy["default"], "Retain");
        let rules = spec["x-kubernetes-validations"].as_array().unwrap();
        assert!(rules[0]["rule"].as_str().unwrap().contains("maxReplicas"));
        let text = s.to_string();
        assert!(!text.contains("x-kubernetes-preserve-unknown-fields"));
        assert!(!text.contains("additionalProperties\":false"));
    }

    #[test]
    fn defaults_fill_an_empty_spec() {
        let spec: TikvClusterSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec, TikvClusterSpec::default());
        assert_eq!(spec.topology.location_labels, ["zone", "host"]);
        assert_eq!(spec.store.replicas, 3);
        assert_eq!(spec.store.common.storage.size, "10Gi");
        assert_eq!(spec.failover_period, "5m");
        assert_eq!(spec.pv_reclaim_policy, PvReclaimPolicy::Retain);
    }

    #[test]
    fn unknown_reclaim_policy_is_refused() {
        let err = serde_json::from_str::<TikvClusterSpec>(r#"{"pvReclaimPolicy": "Recycle"}"#)
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `Recycle`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_top_level_field_is_refused() {
        let err = serde_json::from_str::<TikvClusterSpec>(r#"{"replicas": 3}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `replicas`"),
            "{err}"
        );
    }
}
