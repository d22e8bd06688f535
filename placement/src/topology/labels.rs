//! The pure part of the Kubernetes topology source: where a store's pod is
//! ([`locate`]), which store labels a pod and its node imply ([`derive_labels`]), and how
//! those combine with the labels the store registered itself ([`merge_labels`]). No I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proto::metapb;

use super::TopologyError;
use crate::config::is_dns_label;

/// Store labels as a map, key to value.
pub type Labels = BTreeMap<String, String>;

/// The store label keys Kubernetes can provide, each with the well-known Kubernetes label it
/// is read from (on the pod first, then on its node).
pub const DERIVED_KEYS: [(&str, &str); 3] = [
    ("region", "topology.kubernetes.io/region"),
    ("zone", "topology.kubernetes.io/zone"),
    ("host", "kubernetes.io/hostname"),
];

/// How to find a store's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodLocator {
    /// `GET` the pod by name.
    Named { namespace: String, name: String },
    /// List pods with the field selector `status.podIP=<ip>`, in one namespace or, when
    /// `namespace` is `None`, in all of them.
    ByIp {
        namespace: Option<String>,
        ip: IpAddr,
    },
}

/// Where namespaces come from when a store's address does not name one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceHint {
    /// `[topology] namespace`: when set, used for every lookup.
    pub configured: Option<String>,
    /// `$POD_NAMESPACE`: placement's own namespace, used when the address names none.
    pub own: Option<String>,
}

impl NamespaceHint {
    /// The hint from the config value (`""` = unset) and placement's environment.
    pub fn from_config(configured: &str) -> Self {
        let non_empty = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        NamespaceHint {
            configured: non_empty(configured.to_owned()),
            own: std::env::var("POD_NAMESPACE").ok().and_then(non_empty),
        }
    }
}

/// The host part of `address` (`host:port`, `[v6]:port`, an optional `http://` in front).
fn host_of(address: &str) -> Result<&str, TopologyError> {
    let bad = |reason: &str| TopologyError::BadAddress {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = address.trim();
    let rest = rest
        .strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))
        .unwrap_or(rest)
        .trim_end_matches('/');
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, _) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
        return Ok(host);
    }
    // A bare IPv6 address has several colons and no port.
    if rest.matches(':').count() > 1 {
        return Ok(rest);
    }
    let host = rest.split_once(':').map_or(rest, |(h, _)| h);
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(host)
}

/// Whether `address`'s host is an IP address.
pub fn is_ip_address(address: &str) -> bool {
    host_of(address).is_ok_and(|h| h.parse::<IpAddr>().is_ok())
}

/// Whether `address`'s host is a pod DNS name under a Service with its namespace
/// (`pod.service.namespace.svc[...]`).
pub fn is_pod_dns_name(address: &str) -> bool {
    host_of(address).is_ok_and(|h| {
        let parts: Vec<&str> = h.split('.').collect();
        parts.len() >= 4 && parts[3] == "svc" && parts[..3].iter().all(|p| is_dns_label(p))
    })
}

/// Decides how to find the pod of a store advertising `address`.
///
/// - A pod DNS name under a headless Service, `pod.service.namespace.svc[.cluster.domain]`,
///   names the pod directly; `pod_name`, when given, replaces the first label.
/// - An IP address is looked up by pod IP, unless `pod_name` is given.
///
/// The namespace is `[topology] namespace` when set, else the one in the DNS name, else
/// `$POD_NAMESPACE`; an IP lookup without any of them searches all namespaces, a pod name
/// without any of them is an error.
pub fn locate(
    address: &str,
    pod_name: Option<&str>,
    hint: &NamespaceHint,
) -> Result<PodLocator, TopologyError> {
    let host = host_of(address)?;
    let bad = |reason: String| TopologyError::BadAddress {
        address: address.to_owned(),
        reason,
    };
    let (dns_namespace, dns_pod) = match host.parse::<IpAddr>() {
        Ok(ip) => {
            if pod_name.is_none() {
                let namespace = hint.configured.clone().or_else(|| hint.own.clone());
                return Ok(PodLocator::ByIp { namespace, ip });
            }
            (None, None)
        }
        Err(_) => {
            let parts: Vec<&str> = host.trim_end_matches('.').split('.').collect();
            if parts.len() < 4 || parts[3] != "svc" {
                return Err(bad(format!(
                    "`{host}` is neither an IP nor a pod DNS name (pod.service.namespace.svc)"
                )));
            }
            if let Some(p) = parts[..3].iter().find(|p| !is_dns_label(p)) {
                return Err(bad(format!("`{p}` is not a valid DNS label")));
            }
            (Some(parts[2].to_owned()), Some(parts[0]))
        }
    };
    let name = match pod_name.or(dns_pod) {
        Some(n) if is_dns_label(n) || is_dns_subdomain(n) => n.to_owned(),
        Some(n) => return Err(bad(format!("`{n}` is not a valid pod name"))),
        None => return Err(bad("no pod name".to_owned())),
    };
    let namespace = hint
        .configured
        .clone()
        .or(dns_namespace)
        .or_else(|| hint.own.clone())
        .ok_or_else(|| {
            bad(format!(
                "cannot tell the namespace of pod `{name}`: set [topology] namespace or \
                 $POD_NAMESPACE"
            ))
        })?;
    Ok(PodLocator::Named { namespace, name })
}

/// A DNS subdomain (pod names may contain dots): labels joined by `.`, at most 253 bytes.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// The store labels a pod and its node imply. For each of [`DERIVED_KEYS`] the pod's label
/// wins over the node's; `host` falls back to the pod's `spec.nodeName`. Empty values are
/// skipped.
pub fn derive_labels(
    pod_labels: &Labels,
    node_labels: Option<&Labels>,
    node_name: Option<&str>,
) -> Labels {
    let mut out = Labels::new();
    for (store_key, k8s_key) in DERIVED_KEYS {
        let value = pod_labels
            .get(k8s_key)
            .filter(|v| !v.is_empty())
            .or_else(|| {
                node_labels
                    .and_then(|n| n.get(k8s_key))
                    .filter(|v| !v.is_empty())
            })
            .cloned()
            .or_else(|| {
                (store_key == "host")
                    .then(|| node_name.filter(|n| !n.is_empty()).map(str::to_owned))
                    .flatten()
            });
        if let Some(v) = value {
            out.insert(store_key.to_owned(), v);
        }
    }
    out
}

/// The outcome of [`merge_labels`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The store's labels to persist.
    pub labels: Vec<metapb::StoreLabel>,
    /// The labels in `labels` that came from Kubernetes, to pass back as `previous` next time.
    pub derived: Labels,
}

impl Merged {
    /// Whether `labels` differ from `current`.
    pub fn changes(&self, current: &[metapb::StoreLabel]) -> bool {
        self.labels != current
    }
}

/// Combines a store's current labels with the labels Kubernetes implies.
///
/// `previous` are the labels that came from Kubernetes last time (`None` when unknown, e.g.
/// after placement restarted). A current label equal to the previous derived value for its
/// key is Kubernetes', and is replaced by the new derived value or dropped if Kubernetes no
/// longer provides the key. Every other label was set by the store and stays: Kubernetes
/// only fills keys the store did not set. When `previous` is unknown, the current labels
/// that already equal the derived ones are taken as Kubernetes'; a different value stays as
/// the store's until the store registers again (which replaces its labels).
///
/// Labels keep their order; new derived ones are appended in [`DERIVED_KEYS`] order.
pub fn merge_labels(
    current: &[metapb::StoreLabel],
    previous: Option<&Labels>,
    derived: &Labels,
) -> Merged {
    let was_derived = |l: &metapb::StoreLabel| match previous {
        Some(prev) => prev.get(&l.key) == Some(&l.value),
        None => derived.get(&l.key) == Some(&l.value),
    };
    let own: Vec<&metapb::StoreLabel> = current.iter().filter(|l| !was_derived(l)).collect();
    let fills: Labels = derived
        .iter()
        .filter(|(k, _)| !own.iter().any(|l| &l.key == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut labels = Vec::with_capacity(current.len() + fills.len());
    for l in current {
        if !was_derived(l) {
            labels.push(l.clone());
        } else if let Some(v) = fills.get(&l.key) {
            // Keep the slot of a derived label; skip duplicates of its key.
            if !labels.iter().any(|x: &metapb::StoreLabel| x.key == l.key) {
                labels.push(metapb::StoreLabel {
                    key: l.key.clone(),
                    value: v.clone(),
                });
            }
        }
    }
    for (store_key, _) in DERIVED_KEYS {
        if let Some(v) = fills.get(store_key) {
            if !labels.iter().any(|x| x.key == store_key) {
                labels.push(metapb::StoreLabel {
                    key: store_key.to_owned(),
                    value: v.clone(),
                });
            }
        }
    }
    Merged {
        labels,
        derived: fills,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn store_labels(pairs: &[(&str, &str)]) -> Vec<metapb::StoreLabel> {
        pairs
            .iter()
            .map(|(k, v)| metapb::StoreLabel {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    fn named(ns: &str, name: &str) -> PodLocator {
        PodLocator::Named {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn locates_pods_by_dns_name() {
        let none = NamespaceHint::default();
        let own = NamespaceHint {
            configured: None,
            own: Some("mine".into()),
        };
        let configured = NamespaceHint {
            configured: Some("fixed".into()),
            own: Some("mine".into()),
        };
        let cases: Vec<(&str, Option<&str>, &NamespaceHint, PodLocator)> = vec![
            (
                "basic-store-0.basic-store-peer.db.svc:20160",
                None,
                &none,
                named("db", "basic-store-0"),
            ),
            (
                "basic-store-1.basic-store-peer.db.svc.cluster.local:20160",
                None,
                &none,
                named("db", "basic-store-1"),
            ),
            (
                "http://s-2.peer.db.svc.cluster.local.:20160",
                None,
                &none,
                named("db", "s-2"),
            ),
            ("s-0.peer.db.svc:20160", None, &own, named("db", "s-0")),
            (
                "s-0.peer.db.svc:20160",
                None,
                &configured,
                named("fixed", "s-0"),
            ),
            (
                "s-0.peer.db.svc:20160",
                Some("other-0"),
                &none,
                named("db", "other-0"),
            ),
            ("10.0.0.7:20160", Some("s-7"), &own, named("mine", "s-7")),
        ];
        for (address, pod, hint, want) in cases {
            assert_eq!(locate(address, pod, hint).unwrap(), want, "{address}");
        }
    }

    #[test]
    fn locates_pods_by_ip() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            (
                "10.1.2.3:20160",
                NamespaceHint::default(),
                None,
                ip("10.1.2.3"),
            ),
            (
                "10.1.2.3:20160",
                NamespaceHint {
                    configured: None,
                    own: Some("db".into()),
                },
                Some("db".to_owned()),
                ip("10.1.2.3"),
            ),
            (
                "[fd00::7]:20160",
                NamespaceHint::default(),
                None,
                ip("fd00::7"),
            ),
        ];
        for (address, hint, namespace, ip) in cases {
            assert_eq!(
                locate(address, None, &hint).unwrap(),
                PodLocator::ByIp { namespace, ip },
                "{address}"
            );
        }
    }

    #[test]
    fn rejects_addresses_that_name_no_pod() {
        let none = NamespaceHint::default();
        let err = locate("10.0.0.1:20160", Some("s-0"), &none).unwrap_err();
        assert!(
            err.to_string().contains("cannot tell the namespace"),
            "{err}"
        );
        for (address, why) in [
            ("localhost:20160", "neither an IP"),
            ("store1.example.com:20160", "nor a pod DNS name"),
            ("s-0.peer.db:20160", "nor a pod DNS name"),
            ("s-0.peer.db.cluster:20160", "nor a pod DNS name"),
            ("S_0.peer.db.svc:20160", "not a valid DNS label"),
            (":20160", "no host"),
            ("[fd00::1:20160", "unclosed"),
        ] {
            let err = locate(address, None, &none).unwrap_err().to_string();
            assert!(err.contains(why), "{address}: {err}");
            assert!(err.contains(address), "{address}: {err}");
        }
    }

    #[test]
    fn derives_labels_pod_over_node() {
        let node = map(&[
            ("topology.kubernetes.io/region", "r1"),
            ("topology.kubernetes.io/zone", "z1"),
            ("kubernetes.io/hostname", "node-a"),
            ("unrelated", "x"),
        ]);
        assert_eq!(
            derive_labels(&Labels::new(), Some(&node), Some("node-a-name")),
            map(&[("region", "r1"), ("zone", "z1"), ("host", "node-a")])
        );
        let pod = map(&[("topology.kubernetes.io/zone", "z9"), ("app", "store")]);
        assert_eq!(
            derive_labels(&pod, Some(&node), Some("node-a")),
            map(&[("region", "r1"), ("zone", "z9"), ("host", "node-a")])
        );
        // No hostname label anywhere: the node name is the host.
        let bare = map(&[("topology.kubernetes.io/zone", "z2")]);
        assert_eq!(
            derive_labels(&Labels::new(), Some(&bare), Some("node-b")),
            map(&[("zone", "z2"), ("host", "node-b")])
        );
        // Not scheduled yet: nothing but the pod's own labels.
        assert_eq!(derive_labels(&pod, None, None), map(&[("zone", "z9")]));
        let empty = map(&[("topology.kubernetes.io/zone", "")]);
        assert_eq!(derive_labels(&empty, None, None), Labels::new());
    }

    #[test]
    fn merge_fills_unset_keys_and_keeps_store_labels() {
        let derived = map(&[("zone", "z1"), ("host", "n1")]);
        let current = store_labels(&[("disk", "ssd"), ("zone", "mine")]);
        let m = merge_labels(&current, None, &derived);
        assert_eq!(
            m.labels,
            store_labels(&[("disk", "ssd"), ("zone", "mine"), ("host", "n1")])
        );
        assert_eq!(m.derived, map(&[("host", "n1")]));
        assert!(m.changes(&current));
        // Nothing new: no change.
        let again = merge_labels(&m.labels, Some(&m.derived), &derived);
        assert_eq!(again.labels, m.labels);
        assert!(!again.changes(&m.labels));
    }

    #[test]
    fn merge_replaces_previously_derived_labels() {
        let first = merge_labels(&[], None, &map(&[("zone", "z1"), ("host", "n1")]));
        assert_eq!(
            first.labels,
            store_labels(&[("zone", "z1"), ("host", "n1")])
        );
        // The pod moved to a node in another zone that has no hostname label.
        let moved = merge_labels(&first.labels, Some(&first.derived), &map(&[("zone", "z2")]));
        assert_eq!(moved.labels, store_labels(&[("zone", "z2")]));
        assert_eq!(moved.derived, map(&[("zone", "z2")]));
        // The store re-registered with its own zone: it wins over Kubernetes.
        let own = store_labels(&[("zone", "edge")]);
        let after = merge_labels(
            &own,
            Some(&moved.derived),
            &map(&[("zone", "z3"), ("host", "n3")]),
        );
        assert_eq!(
            after.labels,
            store_labels(&[("zone", "edge"), ("host", "n3")])
        );
        assert_eq!(after.derived, map(&[("host", "n3")]));
    }

    #[test]
    fn merge_after_restart_adopts_matching_labels_only() {
        // Placement restarted: it no longer knows which labels were derived.
        let current = store_labels(&[("zone", "z1"), ("host", "old-node")]);
        let m = merge_labels(
            &current,
            None,
            &map(&[("zone", "z1"), ("host", "new-node")]),
        );
        // `zone` matches and is adopted; `host` differs and counts as the store's own.
        assert_eq!(m.labels, current);
        assert_eq!(m.derived, map(&[("zone", "z1")]));
    }
}
