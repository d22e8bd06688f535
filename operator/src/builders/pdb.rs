//! PodDisruptionBudgets: voluntary evictions (node drains) take at most one pod of a component
//! at a time, so a drain never costs a raft majority.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{metadata, selector_labels, Component};
use crate::crd::TikvCluster;
use crate::Result;

/// `maxUnavailable: 1` over the component's pods.
pub fn pod_disruption_budget(tc: &TikvCluster, c: Component) -> Result<PodDisruptionBudget> {
    Ok(PodDisruptionBudget {
        metadata: metadata(tc, c, super::name(tc, c))?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(tc, c)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::cluster;
    use super::*;
    use crate::crd::TikvClusterSpec;

    #[test]
    fn one_pod_at_a_time() {
        let tc = cluster(TikvClusterSpec::default());
        let pdb = pod_disruption_budget(&tc, Component::Store).unwrap();
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        let sel = spec.selector.unwrap().match_labels.unwrap();
        assert_eq!(sel["app.kubernetes.io/component"], "store");
    }
}
