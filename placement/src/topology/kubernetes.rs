//! [`KubernetesTopology`]: looks a store's pod and node up through the Kubernetes API with a
//! [`kube::Client`] (in a pod: its service account, which needs `get`/`list` on pods and
//! `get` on nodes).

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use proto::metapb;

use super::labels::{
    derive_labels, is_ip_address, is_pod_dns_name, locate, Labels, NamespaceHint, PodLocator,
};
use super::{PodTopology, TopologyError, TopologySource};

/// Reads store topology from the Kubernetes API.
#[derive(Clone)]
pub struct KubernetesTopology {
    client: Client,
    namespaces: NamespaceHint,
}

impl KubernetesTopology {
    /// A source using `client`; `namespaces` says where pods are looked for
    /// ([`NamespaceHint::from_config`]).
    pub fn new(client: Client, namespaces: NamespaceHint) -> Self {
        KubernetesTopology { client, namespaces }
    }

    /// The topology of the pod that `locator` finds.
    pub async fn lookup_pod(
        &self,
        locator: &PodLocator,
    ) -> Result<Option<PodTopology>, TopologyError> {
        match locator {
            PodLocator::Named { namespace, name } => {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
                match pods.get_opt(name).await? {
                    Some(pod) => self.pod_topology(&pod).await.map(Some),
                    None => Ok(None),
                }
            }
            PodLocator::ByIp { namespace, ip } => {
                let pods: Api<Pod> = match namespace {
                    Some(ns) => Api::namespaced(self.client.clone(), ns),
                    None => Api::all(self.client.clone()),
                };
                let list = pods
                    .list(&ListParams::default().fields(&format!("status.podIP={ip}")))
                    .await?;
                // Finished and terminating pods may still hold the IP for a moment.
                let live: Vec<&Pod> = list
                    .items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter(|p| {
                        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                        !matches!(phase, Some("Succeeded" | "Failed"))
                    })
                    .collect();
                let mut found: Vec<PodTopology> = Vec::with_capacity(live.len());
                for pod in live {
                    found.push(self.pod_topology(pod).await?);
                }
                match found.len() {
                    0 => Ok(None),
                    // Host-network pods share their node's IP; if they agree, any will do.
                    _ if found.iter().all(|t| t.labels == found[0].labels) => {
                        Ok(found.into_iter().next())
                    }
                    _ => Err(TopologyError::AmbiguousIp {
                        ip: ip.to_string(),
                        pods: found.into_iter().map(|t| t.pod).collect(),
                    }),
                }
            }
        }
    }

    async fn pod_topology(&self, pod: &Pod) -> Result<PodTopology, TopologyError> {
        let name = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        let empty = BTreeMap::new();
        let pod_labels: &Labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let node_labels = match &node_name {
            Some(node) => {
                let nodes: Api<Node> = Api::all(self.client.clone());
                let found =
                    nodes
                        .get_opt(node)
                        .await?
                        .ok_or_else(|| TopologyError::NodeNotFound {
                            node: node.clone(),
                            pod: name.clone(),
                        })?;
                Some(found.metadata.labels.unwrap_or_default())
            }
            None => None,
        };
        Ok(PodTopology {
            labels: derive_labels(pod_labels, node_labels.as_ref(), node_name.as_deref()),
            pod: name,
            node: node_name,
        })
    }
}

/// The address to find a store's pod by: its `address`, unless that is an IP and its peer
/// or status address is a pod DNS name (which names the pod and its namespace).
fn lookup_address(store: &metapb::Store) -> &str {
    if !is_ip_address(&store.address) {
        return store.address.as_str();
    }
    [&store.peer_address, &store.status_address]
        .into_iter()
        .find(|a| is_pod_dns_name(a))
        .map_or(store.address.as_str(), |a| a.as_str())
}

impl TopologySource for KubernetesTopology {
    fn lookup<'a>(
        &'a self,
        store: &'a metapb::Store,
    ) -> BoxFuture<'a, Result<Option<PodTopology>, TopologyError>> {
        async move {
            let locator = locate(lookup_address(store), None, &self.namespaces)?;
            self.lookup_pod(&locator).await
        }
        .boxed()
    }
}
