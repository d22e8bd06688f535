//! Cluster DNS for the node agent's pods, as a hosts file: the names CoreDNS would answer,
//! computed from Services and their EndpointSlices (a pure function, [`hosts_entries`]).
//!
//! - `<hostname>.<service>.<ns>.svc` for every ready endpoint with a hostname of a headless
//!   Service (a StatefulSet pod behind its peer Service); the EndpointSlice controller already
//!   counts not-ready pods as ready when the Service publishes not-ready addresses;
//! - `<service>.<ns>.svc` on every ready address of a headless Service, and on the first ready
//!   address of a ClusterIP Service: no kube-proxy runs here, so a Service name leads straight
//!   to one of its pods (Service ports equal target ports in everything this project renders).
//!
//! Each name also comes with its `.cluster.local` form and the `<name>.<ns>` form a pod of the
//! namespace reaches through its search path.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming an EndpointSlice's Service.
const SERVICE_LABEL: &str = "kubernetes.io/service-name";

/// `fqdn` (ending in `.<ns>.svc`), its `.cluster.local` form and its form without `.svc`.
fn forms(fqdn: &str) -> [String; 3] {
    [
        fqdn.to_owned(),
        format!("{fqdn}.cluster.local"),
        fqdn.trim_end_matches(".svc").to_owned(),
    ]
}

/// Hosts-file entries (address, names) for `services` and `slices`, sorted by address.
pub fn hosts_entries(
    services: &[Service],
    slices: &[EndpointSlice],
) -> Vec<(Ipv4Addr, Vec<String>)> {
    let mut entries: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for svc in services {
        let (Some(name), Some(ns)) = (&svc.metadata.name, &svc.metadata.namespace) else {
            continue;
        };
        let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
        let mut ready: Vec<(Ipv4Addr, Option<String>)> = slices
            .iter()
            .filter(|s| s.metadata.namespace.as_ref() == Some(ns))
            .filter(|s| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_LABEL))
                    == Some(name)
            })
            .filter(|s| s.address_type == "IPv4")
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .flat_map(|e| {
                e.addresses
                    .iter()
                    .filter_map(|a| a.parse::<Ipv4Addr>().ok())
                    .map(|a| (a, e.hostname.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        ready.sort();
        ready.dedup();
        let service = format!("{name}.{ns}.svc");
        for (i, (addr, hostname)) in ready.iter().enumerate() {
            let names = entries.entry(*addr).or_default();
            if headless {
                if let Some(h) = hostname {
                    names.extend(forms(&format!("{h}.{service}")));
                }
            }
            if headless || i == 0 {
                names.extend(forms(&service));
            }
        }
    }
    for names in entries.values_mut() {
        names.dedup();
    }
    entries.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(name: &str, headless: bool) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("db".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(if headless { "None" } else { "10.0.0.20" }.into()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn slice(service: &str, endpoints: &[(&str, Option<&str>, Option<bool>)]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{service}-abc")),
                namespace: Some("db".into()),
                labels: Some([(SERVICE_LABEL.to_owned(), service.to_owned())].into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(
                endpoints
                    .iter()
                    .map(|(ip, host, ready)| Endpoint {
                        addresses: vec![(*ip).into()],
                        hostname: host.map(str::to_owned),
                        conditions: Some(EndpointConditions {
                            ready: *ready,
                            ..EndpointConditions::default()
                        }),
                        ..Endpoint::default()
                    })
                    .collect(),
            ),
            ..EndpointSlice::default()
        }
    }

    fn lookup(entries: &[(Ipv4Addr, Vec<String>)], name: &str) -> Vec<String> {
        entries
            .iter()
            .filter(|(_, names)| names.iter().any(|n| n == name))
            .map(|(ip, _)| ip.to_string())
            .collect()
    }

    #[test]
    fn pods_behind_a_headless_service_get_their_names_and_ready_ones_the_service_name() {
        let entries = hosts_entries(
            &[service("basic-store-peer", true)],
            &[slice(
                "basic-store-peer",
                &[
                    ("10.213.9.11", Some("basic-store-0"), Some(true)),
                    ("10.213.9.12", Some("basic-store-1"), None),
                    ("10.213.9.13", Some("basic-store-2"), Some(false)),
                ],
            )],
        );
        assert_eq!(
            lookup(&entries, "basic-store-0.basic-store-peer.db.svc"),
            ["10.213.9.11"]
        );
        assert_eq!(
            lookup(
                &entries,
                "basic-store-1.basic-store-peer.db.svc.cluster.local"
            ),
            ["10.213.9.12"]
        );
        assert_eq!(
            lookup(&entries, "basic-store-1.basic-store-peer.db"),
            ["10.213.9.12"]
        );
        assert!(
            lookup(&entries, "basic-store-2.basic-store-peer.db.svc").is_empty(),
            "not ready"
        );
        assert_eq!(
            lookup(&entries, "basic-store-peer.db.svc"),
            ["10.213.9.11", "10.213.9.12"]
        );
    }

    #[test]
    fn a_cluster_ip_service_leads_to_one_ready_pod() {
        let entries = hosts_entries(
            &[service("basic-placement", false), service("other", false)],
            &[
                slice(
                    "basic-placement",
                    &[
                        ("10.213.9.14", Some("p"), Some(true)),
                        ("10.213.9.10", None, Some(true)),
                    ],
                ),
                slice("other", &[("10.213.9.15", None, Some(false))]),
            ],
        );
        assert_eq!(lookup(&entries, "basic-placement.db.svc"), ["10.213.9.10"]);
        assert!(
            lookup(&entries, "p.basic-placement.db.svc").is_empty(),
            "not headless"
        );
        assert!(
            lookup(&entries, "other.db.svc").is_empty(),
            "no ready endpoint"
        );
    }
}
