//! StatefulSets: one per component, pods named `<cluster>-<component>-<ordinal>`, each with a
//! data volume claim, the rendered config mounted read-only, and the binary started with
//! exactly the flags it parses (`store --help`, `placement --help`).
//!
//! Pods advertise their stable DNS name under the headless peer Service, so a rescheduled pod
//! keeps its identity. Probes hit the real health endpoints: placement's `/pd/api/v1/health`
//! (ready) and `/health` (alive) on its client port, the store's `/health` on its status port.
//! Unless the spec says otherwise, pods spread over zones and hosts and prefer not to share a
//! host.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, TopologySpreadConstraint, Volume,
    VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{config_hash, render_config};
use super::{
    config_map_name, image, labels, metadata, name, namespace, peer_service_name, selector_labels,
    Component, CONFIG_HASH_ANNOTATION, TEMPLATE_HASH_ANNOTATION,
};
use crate::crd::{PvReclaimPolicy, TikvCluster};
use crate::Result;

/// Label keys the default topology spread uses, outermost first.
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";
pub const HOST_KEY: &str = "kubernetes.io/hostname";

/// The StatefulSet of `c`. `partition` holds pods with a lower ordinal on the old revision
/// during a rolling upgrade; 0 updates them all.
pub fn stateful_set(tc: &TikvCluster, c: Component, partition: i32) -> Result<StatefulSet> {
    let config = render_config(tc, c)?;
    let mut pod_annotations = BTreeMap::new();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.to_owned(), config_hash(&config));
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(tc, c)),
            annotations: Some(pod_annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(tc, c)?),
    };
    let template_json = serde_json::to_string(&template).expect("a pod template serializes");
    let mut meta = metadata(tc, c, name(tc, c))?;
    meta.annotations = Some(BTreeMap::from([(
        TEMPLATE_HASH_ANNOTATION.to_owned(),
        config_hash(&template_json),
    )]));
    Ok(StatefulSet {
        metadata: meta,
        spec: StatefulSetSpec {
            replicas: Some(c.replicas(tc)),
            service_name: Some(peer_service_name(tc, c)),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(tc, c)),
                ..LabelSelector::default()
            },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(partition),
                    ..RollingUpdateStatefulSetStrategy::default()
                }),
            }),
            template,
            volume_claim_templates: Some(vec![data_claim(tc, c)]),
            // A pod removed by scale-in served a store placement already tombstoned; its data
            // must not come back if the ordinal is reused. Deleting the cluster keeps volumes
            // unless `pvReclaimPolicy` is `Delete` (the finalizer deletes them too).
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some("Delete".into()),
                    when_deleted: Some(
                        match tc.spec.pv_reclaim_policy {
                            PvReclaimPolicy::Retain => "Retain",
                            PvReclaimPolicy::Delete => "Delete",
                        }
                        .into(),
                    ),
                },
            ),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    })
}

fn pod_spec(tc: &TikvCluster, c: Component) -> Result<PodSpec> {
    let spec = c.spec(tc);
    let topology_spread = if spec.topology_spread_constraints.is_empty() {
        default_topology_spread(tc, c)
    } else {
        spec.topology_spread_constraints.clone()
    };
    Ok(PodSpec {
        containers: vec![container(tc, c)?],
        volumes: Some(vec![Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(tc, c),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        affinity: Some(
            spec.affinity
                .clone()
                .unwrap_or_else(|| default_affinity(tc, c)),
        ),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        topology_spread_constraints: Some(topology_spread),
        // Placement reads pods and nodes for store topology under its own account.
        service_account_name: (c == Component::Placement)
            .then(|| super::rbac::placement_service_account_name(tc)),
        termination_grace_period_seconds: Some(match c {
            Component::Placement => 30,
            Component::Store => 120,
        }),
        ..PodSpec::default()
    })
}

fn container(tc: &TikvCluster, c: Component) -> Result<Container> {
    let spec = c.spec(tc);
    let mut env = downward_env();
    env.extend(spec.env.iter().cloned());
    Ok(Container {
        name: c.as_str().into(),
        image: Some(image(tc, c)),
        command: Some(vec![format!("/usr/local/bin/{}", c.as_str())]),
        args: Some(args(tc, c)?),
        env: Some(env),
        ports: Some(
            c.ports()
                .iter()
                .map(|&(name, port)| ContainerPort {
                    name: Some(name.into()),
                    container_port: port,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                })
                .collect(),
        ),
        resources: spec.resources.clone(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".into(),
                mount_path: c.data_dir(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "config".into(),
                mount_path: c.config_dir(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        readiness_probe: Some(probe(c, true)),
        liveness_probe: Some(probe(c, false)),
        ..Container::default()
    })
}

/// Command-line flags, exactly those the binaries parse. `$(POD_NAME)` is expanded by the
/// kubelet from the container's env.
pub fn args(tc: &TikvCluster, c: Component) -> Result<Vec<String>> {
    let ns = namespace(tc)?;
    let pod_dns = format!("$(POD_NAME).{}.{ns}.svc", peer_service_name(tc, c));
    let config = format!("{}/{}", c.config_dir(), c.config_file());
    Ok(match c {
        Component::Placement => vec![
            "--name=$(POD_NAME)".into(),
            "--client-urls=http://0.0.0.0:2379".into(),
            format!("--advertise-client-urls=http://{pod_dns}:2379"),
            "--peer-urls=http://0.0.0.0:2380".into(),
            format!("--advertise-peer-urls=http://{pod_dns}:2380"),
            format!("--initial-cluster={}", initial_cluster(tc)?),
            format!("--data-dir={}", c.data_dir()),
            format!("--config={config}"),
        ],
        Component::Store => vec![
            format!("--pd-endpoints={}", placement_endpoint(tc)?),
            "--addr=0.0.0.0:20160".into(),
            format!("--advertise-addr={pod_dns}:20160"),
            "--status-addr=0.0.0.0:20180".into(),
            format!("--data-dir={}", c.data_dir()),
            format!("--config={config}"),
        ],
    })
}

/// `<pod>=http://<pod>.<peer-svc>.<ns>.svc:2380,...` over ordinals `0..spec.placement.replicas`
/// (PD's `--initial-cluster` syntax). Members bootstrap from it; a member whose data directory
/// already holds state ignores it, and one added later joins the members listed.
pub fn initial_cluster(tc: &TikvCluster) -> Result<String> {
    let ns = namespace(tc)?;
    let c = Component::Placement;
    let peer = peer_service_name(tc, c);
    Ok((0..tc.spec.placement.replicas.max(1))
        .map(|o| {
            let pod = format!("{}-{o}", name(tc, c));
            format!("{pod}=http://{pod}.{peer}.{ns}.svc:2380")
        })
        .collect::<Vec<_>>()
        .join(","))
}

/// Placement's client Service URL, what stores (and the operator) dial.
pub fn placement_endpoint(tc: &TikvCluster) -> Result<String> {
    Ok(format!(
        "http://{}.{}.svc:2379",
        name(tc, Component::Placement),
        namespace(tc)?
    ))
}

/// `POD_NAME`, `POD_NAMESPACE` and `NODE_NAME` from the downward API: the advertise address
/// needs the first; a store's topology source reads its node's labels through the others.
fn downward_env() -> Vec<EnvVar> {
    [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("NODE_NAME", "spec.nodeName"),
    ]
    .into_iter()
    .map(|(name, path)| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    })
    .collect()
}

fn probe(c: Component, readiness: bool) -> Probe {
    let (path, port) = match (c, readiness) {
        (Component::Placement, true) => ("/pd/api/v1/health", "client"),
        (Component::Placement, false) => ("/health", "client"),
        (Component::Store, _) => ("/health", "status"),
    };
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(if readiness { 5 } else { 30 }),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(if readiness { 3 } else { 6 }),
        ..Probe::default()
    }
}

fn data_claim(tc: &TikvCluster, c: Component) -> PersistentVolumeClaim {
    let storage = &c.spec(tc).storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(selector_labels(tc, c)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Spread by zone, then by host, at most one pod apart; best effort so a one-zone or one-node
/// cluster still schedules.
fn default_topology_spread(tc: &TikvCluster, c: Component) -> Vec<TopologySpreadConstraint> {
    [ZONE_KEY, HOST_KEY]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(tc, c)),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

/// Prefer hosts that run no other pod of the component.
fn default_affinity(tc: &TikvCluster, c: Component) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: HOST_KEY.into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(tc, c)),
                            ..LabelSelector::default()
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::cluster;
    use super::*;
    use crate::crd::TikvClusterSpec;

    fn must_container(sts: &StatefulSet) -> Container {
        sts.spec.template.spec.as_ref().unwrap().containers[0].clone()
    }

    #[test]
    fn store_flags_match_the_binary() {
        let tc = cluster(TikvClusterSpec::default());
        let sts = stateful_set(&tc, Component::Store, 0).unwrap();
        let c = must_container(&sts);
        assert_eq!(c.command.unwrap(), ["/usr/local/bin/store"]);
        assert_eq!(
            c.args.unwrap(),
            [
                "--pd-endpoints=http://basic-placement.db.svc:2379",
                "--addr=0.0.0.0:20160",
                "--advertise-addr=$(POD_NAME).basic-store-peer.db.svc:20160",
                "--status-addr=0.0.0.0:20180",
                "--data-dir=/var/lib/store",
                "--config=/etc/store/store.toml",
            ]
        );
        let env: Vec<_> = c.env.unwrap().iter().map(|e| e.name.clone()).collect();
        assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "NODE_NAME"]);
    }

    #[test]
    fn placement_flags_match_the_binary() {
        let tc = cluster(TikvClusterSpec::default());
        let c = must_container(&stateful_set(&tc, Component::Placement, 0).unwrap());
        assert_eq!(c.command.unwrap(), ["/usr/local/bin/placement"]);
        assert_eq!(
            c.args.unwrap(),
            [
                "--name=$(POD_NAME)",
                "--client-urls=http://0.0.0.0:2379",
                "--advertise-client-urls=http://$(POD_NAME).basic-placement-peer.db.svc:2379",
                "--peer-urls=http://0.0.0.0:2380",
                "--advertise-peer-urls=http://$(POD_NAME).basic-placement-peer.db.svc:2380",
                "--initial-cluster=basic-placement-0=http://basic-placement-0.basic-placement-peer.db.svc:2380",
                "--data-dir=/var/lib/placement",
                "--config=/etc/placement/placement.toml",
            ]
        );
    }

    #[test]
    fn initial_cluster_lists_every_member_and_the_pod_runs_as_placement() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.placement.replicas = 3;
        let sts = stateful_set(&tc, Component::Placement, 0).unwrap();
        let args = must_container(&sts).args.unwrap();
        let flag = args
            .iter()
            .find_map(|a| a.strip_prefix("--initial-cluster="))
            .unwrap();
        let members: Vec<_> = flag.split(',').collect();
        assert_eq!(
            members,
            (0..3)
                .map(|o| format!(
                    "basic-placement-{o}=http://basic-placement-{o}.basic-placement-peer.db.svc:2380"
                ))
                .collect::<Vec<_>>()
        );
        let pod = sts.spec.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("basic-placement"));
        let store = stateful_set(&tc, Component::Store, 0).unwrap();
        assert_eq!(store.spec.template.spec.unwrap().service_account_name, None);
    }

    #[test]
    fn reclaim_policy_delete_deletes_claims_with_the_statefulset() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.pv_reclaim_policy = PvReclaimPolicy::Delete;
        let sts = stateful_set(&tc, Component::Store, 0).unwrap();
        let retention = sts.spec.persistent_volume_claim_retention_policy.unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
    }

    #[test]
    fn probes_hit_the_health_endpoints() {
        let tc = cluster(TikvClusterSpec::default());
        let path_port = |p: Option<Probe>| {
            let get = p.unwrap().http_get.unwrap();
            (get.path.unwrap(), get.port)
        };
        let c = must_container(&stateful_set(&tc, Component::Placement, 0).unwrap());
        let client = IntOrString::String("client".into());
        assert_eq!(
            path_port(c.readiness_probe),
            ("/pd/api/v1/health".into(), client.clone())
        );
        assert_eq!(path_port(c.liveness_probe), ("/health".into(), client));
        let c = must_container(&stateful_set(&tc, Component::Store, 0).unwrap());
        let status = IntOrString::String("status".into());
        assert_eq!(
            path_port(c.readiness_probe),
            ("/health".into(), status.clone())
        );
        assert_eq!(path_port(c.liveness_probe), ("/health".into(), status));
        let ports: Vec<_> = c.ports.unwrap().iter().map(|p| p.container_port).collect();
        assert_eq!(ports, [20160, 20180]);
    }

    #[test]
    fn data_claim_and_config_volume() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.store.common.storage.size = "100Gi".into();
        tc.spec.store.common.storage.storage_class_name = Some("fast".into());
        let sts = stateful_set(&tc, Component::Store, 0).unwrap();
        let claim = &sts.spec.volume_claim_templates.as_ref().unwrap()[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("data"));
        let spec = claim.spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        let requests = spec.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(requests["storage"], Quantity("100Gi".into()));
        let pod = sts.spec.template.spec.as_ref().unwrap();
        let cm = pod.volumes.as_ref().unwrap()[0]
            .config_map
            .as_ref()
            .unwrap();
        assert_eq!(cm.name, "basic-store-config");
        let mounts: Vec<_> = must_container(&sts)
            .volume_mounts
            .unwrap()
            .iter()
            .map(|m| (m.name.clone(), m.mount_path.clone()))
            .collect();
        assert_eq!(
            mounts,
            [
                ("data".to_owned(), "/var/lib/store".to_owned()),
                ("config".to_owned(), "/etc/store".to_owned())
            ]
        );
        assert_eq!(sts.spec.service_name.as_deref(), Some("basic-store-peer"));
        let retention = sts
            .spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .unwrap();
        assert_eq!(retention.when_scaled.as_deref(), Some("Delete"));
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        assert_eq!(sts.spec.replicas, Some(3));
    }

    #[test]
    fn default_spread_by_zone_and_host_with_anti_affinity() {
        let tc = cluster(TikvClusterSpec::default());
        let sts = stateful_set(&tc, Component::Store, 0).unwrap();
        let pod = sts.spec.template.spec.unwrap();
        let keys: Vec<_> = pod
            .topology_spread_constraints
            .unwrap()
            .iter()
            .map(|t| (t.topology_key.clone(), t.max_skew))
            .collect();
        assert_eq!(keys, [(ZONE_KEY.to_owned(), 1), (HOST_KEY.to_owned(), 1)]);
        let anti = pod.affinity.unwrap().pod_anti_affinity.unwrap();
        let term = &anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap()[0];
        assert_eq!(term.pod_affinity_term.topology_key, HOST_KEY);
    }

    #[test]
    fn user_scheduling_replaces_defaults() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.store.common.topology_spread_constraints = vec![TopologySpreadConstraint {
            max_skew: 2,
            topology_key: "rack".into(),
            when_unsatisfiable: "DoNotSchedule".into(),
            ..TopologySpreadConstraint::default()
        }];
        tc.spec.store.common.affinity = Some(Affinity::default());
        tc.spec.store.common.node_selector = [("disk".to_owned(), "ssd".to_owned())].into();
        let pod = stateful_set(&tc, Component::Store, 0)
            .unwrap()
            .spec
            .template
            .spec
            .unwrap();
        let spread = pod.topology_spread_constraints.unwrap();
        assert_eq!(spread.len(), 1);
        assert_eq!(spread[0].topology_key, "rack");
        assert_eq!(pod.affinity, Some(Affinity::default()));
        assert_eq!(pod.node_selector.unwrap()["disk"], "ssd");
    }

    #[test]
    fn config_change_changes_the_pod_template() {
        let mut tc = cluster(TikvClusterSpec::default());
        let hash = |tc: &TikvCluster| {
            let sts = stateful_set(tc, Component::Store, 0).unwrap();
            sts.spec.template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION].clone()
        };
        let before = hash(&tc);
        tc.spec.store.common.config = Some("[raftstore]\nregion-max-size = 1024\n".into());
        assert_ne!(before, hash(&tc));
    }

    #[test]
    fn partition_is_passed_through() {
        let tc = cluster(TikvClusterSpec::default());
        let sts = stateful_set(&tc, Component::Store, 2).unwrap();
        let strategy = sts.spec.update_strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(strategy.rolling_update.unwrap().partition, Some(2));
    }
}
