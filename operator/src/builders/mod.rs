//! Pure builders: `&TikvCluster` in, Kubernetes objects out, no I/O. The reconcile loop
//! server-side-applies whatever these return, so every object the operator owns is decided
//! here and unit-tested here.
//!
//! Each component ([`Component::Placement`], [`Component::Store`]) gets a headless peer Service
//! (stable pod DNS), a client Service, a ConfigMap with its rendered config file, a
//! StatefulSet and a PodDisruptionBudget; placement also gets a ServiceAccount, bound
//! cluster-wide to the chart's topology ClusterRole ([`placement_topology_binding`]).
//! [`objects`] lists the namespaced ones.

mod config;
mod pdb;
mod rbac;
mod service;
mod statefulset;

pub use config::{config_map, render_config};
pub use pdb::pod_disruption_budget;
pub use rbac::{
    placement_service_account, placement_service_account_name, placement_topology_binding,
    topology_binding_name, NAMESPACE_LABEL,
};
pub use service::{client_service, peer_service};
pub use statefulset::{initial_cluster, placement_endpoint, stateful_set};

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::{ComponentSpec, TikvCluster, DEFAULT_IMAGE};
use crate::{Error, Result};

/// Name of the field manager the operator applies with.
pub const MANAGER: &str = "tikv-operator";
/// Pod-template annotation holding a hash of the rendered config, so a config change rolls pods.
pub const CONFIG_HASH_ANNOTATION: &str = "tikv.ferrokv.io/config-hash";
/// StatefulSet annotation holding a hash of the pod template the operator applied: a change
/// starts a rolling upgrade (the API server's defaults make comparing templates unreliable).
pub const TEMPLATE_HASH_ANNOTATION: &str = "tikv.ferrokv.io/template-hash";

/// One of the two StatefulSets of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Placement,
    Store,
}

impl Component {
    pub const ALL: [Component; 2] = [Component::Placement, Component::Store];

    /// Name as used in labels, object names and the binary's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Placement => "placement",
            Component::Store => "store",
        }
    }

    /// The component's shared settings in the spec.
    pub fn spec(self, tc: &TikvCluster) -> &ComponentSpec {
        match self {
            Component::Placement => &tc.spec.placement.common,
            Component::Store => &tc.spec.store.common,
        }
    }

    /// Desired pod count.
    pub fn replicas(self, tc: &TikvCluster) -> i32 {
        match self {
            Component::Placement => tc.spec.placement.replicas,
            Component::Store => tc.spec.store.replicas,
        }
    }

    /// `(name, port)` of every port the container serves; the first is the main one.
    pub fn ports(self) -> &'static [(&'static str, i32)] {
        match self {
            Component::Placement => &[("client", 2379), ("peer", 2380)],
            Component::Store => &[("grpc", 20160), ("status", 20180)],
        }
    }

    /// Directory the data volume is mounted at.
    pub fn data_dir(self) -> String {
        format!("/var/lib/{}", self.as_str())
    }

    /// Directory the ConfigMap is mounted at.
    pub fn config_dir(self) -> String {
        format!("/etc/{}", self.as_str())
    }

    /// File name of the rendered config inside the ConfigMap.
    pub fn config_file(self) -> String {
        format!("{}.toml", self.as_str())
    }
}

/// `<cluster>-<component>`: StatefulSet, client Service and PDB.
pub fn name(tc: &TikvCluster, c: Component) -> String {
    format!("{}-{}", tc.name_any(), c.as_str())
}

/// `<cluster>-<component>-peer`: the headless Service giving pods stable DNS names.
pub fn peer_service_name(tc: &TikvCluster, c: Component) -> String {
    format!("{}-peer", name(tc, c))
}

/// `<cluster>-<component>-config`.
pub fn config_map_name(tc: &TikvCluster, c: Component) -> String {
    format!("{}-config", name(tc, c))
}

/// Labels selecting one component's pods.
pub fn selector_labels(tc: &TikvCluster, c: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "ferrokv".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), tc.name_any()),
        (
            "app.kubernetes.io/component".to_owned(),
            c.as_str().to_owned(),
        ),
    ])
}

/// Selector labels plus `managed-by`, put on every object.
pub fn labels(tc: &TikvCluster, c: Component) -> BTreeMap<String, String> {
    let mut l = selector_labels(tc, c);
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l
}

/// The cluster's namespace; the API server always sets it on a namespaced resource.
pub fn namespace(tc: &TikvCluster) -> Result<String> {
    tc.namespace().ok_or(Error::MissingMetadata("namespace"))
}

/// Controller owner reference, so deleting the cluster garbage-collects what it owns.
pub fn owner_ref(tc: &TikvCluster) -> Result<OwnerReference> {
    tc.controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("uid"))
}

/// Metadata of an owned object: name, namespace, labels, owner.
pub fn metadata(tc: &TikvCluster, c: Component, name: String) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(namespace(tc)?),
        labels: Some(labels(tc, c)),
        owner_references: Some(vec![owner_ref(tc)?]),
        ..ObjectMeta::default()
    })
}

/// Image reference: the component's `image` (default [`DEFAULT_IMAGE`]) tagged with its
/// `version` (default the cluster's), unless `image` already names a tag or digest.
pub fn image(tc: &TikvCluster, c: Component) -> String {
    let spec = c.spec(tc);
    let repo = spec.image.as_deref().unwrap_or(DEFAULT_IMAGE);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    if last.contains(':') || repo.contains('@') {
        return repo.to_owned();
    }
    let version = spec.version.as_deref().unwrap_or(&tc.spec.version);
    format!("{repo}:{version}")
}

/// Every namespaced object of a cluster, as JSON ready for server-side apply, in apply order
/// (the cluster-scoped topology binding is separate: it needs the ClusterRole's name).
pub fn objects(tc: &TikvCluster) -> Result<Vec<serde_json::Value>> {
    let to_json = |v: Result<serde_json::Value, serde_json::Error>| {
        v.expect("Kubernetes objects always serialize")
    };
    let mut out = vec![to_json(serde_json::to_value(placement_service_account(
        tc,
    )?))];
    for c in Component::ALL {
        out.push(to_json(serde_json::to_value(peer_service(tc, c)?)));
        out.push(to_json(serde_json::to_value(client_service(tc, c)?)));
        out.push(to_json(serde_json::to_value(config_map(tc, c)?)));
        out.push(to_json(serde_json::to_value(stateful_set(tc, c, 0)?)));
        out.push(to_json(serde_json::to_value(pod_disruption_budget(tc, c)?)));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::crd::{TikvCluster, TikvClusterSpec};

    /// A cluster as the API server would hand it over: defaulted, namespaced, with a uid.
    pub fn cluster(spec: TikvClusterSpec) -> TikvCluster {
        let mut tc = TikvCluster::new("basic", spec);
        tc.metadata.namespace = Some("db".into());
        tc.metadata.uid = Some("0b7c2d4e-1111-2222-3333-444455556666".into());
        tc.metadata.generation = Some(1);
        tc
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::cluster;
    use super::*;
    use crate::crd::TikvClusterSpec;

    #[test]
    fn image_defaults_and_overrides() {
        let mut tc = cluster(TikvClusterSpec::default());
        assert_eq!(
            image(&tc, Component::Store),
            concat!("ghcr.io/ferrokv/ferrokv:v", env!("CARGO_PKG_VERSION"))
        );
        tc.spec.version = "v0.1.0".into();
        tc.spec.placement.common.version = Some("v0.2.0".into());
        assert_eq!(
            image(&tc, Component::Placement),
            "ghcr.io/ferrokv/ferrokv:v0.2.0"
        );
        tc.spec.store.common.image = Some("localhost:5000/kv@sha256:abc".into());
        assert_eq!(image(&tc, Component::Store), "localhost:5000/kv@sha256:abc");
        tc.spec.store.common.image = Some("localhost:5000/kv".into());
        assert_eq!(image(&tc, Component::Store), "localhost:5000/kv:v0.1.0");
    }

    #[test]
    fn objects_are_owned_and_labelled() {
        let tc = cluster(TikvClusterSpec::default());
        let objs = objects(&tc).unwrap();
        assert_eq!(objs.len(), 11);
        assert_eq!(objs[0]["kind"], "ServiceAccount");
        for o in &objs {
            let meta = &o["metadata"];
            assert_eq!(meta["namespace"], "db");
            assert_eq!(meta["ownerReferences"][0]["kind"], "TikvCluster");
            assert_eq!(meta["ownerReferences"][0]["controller"], true);
            assert_eq!(meta["labels"]["app.kubernetes.io/instance"], "basic");
        }
    }

    #[test]
    fn missing_uid_is_an_error_not_a_panic() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.metadata.uid = None;
        let err = objects(&tc).unwrap_err();
        assert!(err.to_string().contains("metadata.uid"), "{err}");
    }
}
