//! Placement's identity for store topology: placement reads pods and nodes to label stores with
//! their node's zone and host, so each cluster gets a ServiceAccount `<cluster>-placement`
//! (owned by the cluster, used by the placement pods) and a ClusterRoleBinding tying it to the
//! ClusterRole the chart installs (`<release>-placement-topology`: read pods and nodes).
//!
//! A ClusterRoleBinding is cluster-scoped and a namespaced owner cannot own it, so it carries
//! no owner reference: the cluster's finalizer deletes it. Its name includes the namespace,
//! so clusters of the same name in two namespaces do not collide.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{labels, metadata, name, namespace, Component};
use crate::crd::TikvCluster;
use crate::Result;

/// Label on the ClusterRoleBinding naming the cluster's namespace (the instance label names
/// the cluster).
pub const NAMESPACE_LABEL: &str = "tikv.ferrokv.io/namespace";

/// `<cluster>-placement`: the placement pods' ServiceAccount.
pub fn placement_service_account_name(tc: &TikvCluster) -> String {
    name(tc, Component::Placement)
}

/// `tikv-<namespace>-<cluster>-placement-topology`.
pub fn topology_binding_name(tc: &TikvCluster) -> Result<String> {
    Ok(format!(
        "tikv-{}-{}-placement-topology",
        namespace(tc)?,
        tc.name_any()
    ))
}

/// The placement pods' ServiceAccount, owned by the cluster.
pub fn placement_service_account(tc: &TikvCluster) -> Result<ServiceAccount> {
    Ok(ServiceAccount {
        metadata: metadata(tc, Component::Placement, placement_service_account_name(tc))?,
        ..ServiceAccount::default()
    })
}

/// Binds the placement ServiceAccount to `cluster_role` (the chart's topology ClusterRole).
pub fn placement_topology_binding(
    tc: &TikvCluster,
    cluster_role: &str,
) -> Result<ClusterRoleBinding> {
    let ns = namespace(tc)?;
    let mut labels = labels(tc, Component::Placement);
    labels.insert(NAMESPACE_LABEL.into(), ns.clone());
    Ok(ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(topology_binding_name(tc)?),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: cluster_role.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: placement_service_account_name(tc),
            namespace: Some(ns),
            ..Subject::default()
        }]),
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::cluster;
    use super::*;
    use crate::crd::TikvClusterSpec;

    #[test]
    fn service_account_is_owned_and_binding_names_the_role_and_namespace() {
        let tc = cluster(TikvClusterSpec::default());
        let sa = placement_service_account(&tc).unwrap();
        assert_eq!(sa.metadata.name.as_deref(), Some("basic-placement"));
        assert_eq!(sa.metadata.namespace.as_deref(), Some("db"));
        assert_eq!(sa.metadata.owner_references.unwrap()[0].name, "basic");
        let crb = placement_topology_binding(&tc, "rel-placement-topology").unwrap();
        assert_eq!(
            crb.metadata.name.as_deref(),
            Some("tikv-db-basic-placement-topology")
        );
        assert_eq!(crb.metadata.owner_references, None);
        assert_eq!(crb.metadata.labels.unwrap()[NAMESPACE_LABEL], "db");
        assert_eq!(
            (crb.role_ref.kind.as_str(), crb.role_ref.name.as_str()),
            ("ClusterRole", "rel-placement-topology")
        );
        let subject = &crb.subjects.unwrap()[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", "basic-placement", Some("db"))
        );
    }
}
