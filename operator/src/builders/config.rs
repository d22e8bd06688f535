//! The ConfigMap holding each component's config file: the user's `config` TOML with the keys
//! the operator owns laid over it. Addresses and directories are not written here; they are
//! flags (see `statefulset`), which override the file.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{config_map_name, metadata, Component};
use crate::crd::TikvCluster;
use crate::{Error, Result};

/// The component's config file. For placement, `max-replicas` and `location-labels` come from
/// the cluster spec and win over the user's TOML, and `[topology] source = "kubernetes"` makes
/// placement derive store topology labels from the store pods' nodes.
pub fn render_config(tc: &TikvCluster, c: Component) -> Result<String> {
    let user = c.spec(tc).config.as_deref().unwrap_or("");
    let mut table: toml::Table =
        user.parse()
            .map_err(|e: toml::de::Error| Error::ComponentConfig {
                component: c.as_str(),
                reason: e.message().to_owned(),
            })?;
    if c == Component::Placement {
        table.insert(
            "max-replicas".into(),
            toml::Value::Integer(tc.spec.max_replicas.into()),
        );
        let labels = tc.spec.topology.location_labels.iter().cloned();
        table.insert(
            "location-labels".into(),
            toml::Value::Array(labels.map(toml::Value::String).collect()),
        );
        let topology = table
            .entry("topology")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(topology) = topology else {
            return Err(Error::ComponentConfig {
                component: c.as_str(),
                reason: "`topology` must be a table".into(),
            });
        };
        topology.insert("source".into(), toml::Value::String("kubernetes".into()));
    }
    if c == Component::Store {
        store_capacity(tc, &mut table)?;
    }
    Ok(toml::to_string(&table).expect("a toml::Table always serializes"))
}

/// A store reports its volume's size as its capacity (`raftstore.capacity`, as tidb-operator
/// passes a TiKV its storage request), unless the user's TOML sets one: volumes on a shared
/// disk (local paths, hostPath) would otherwise report the whole disk, and placement would
/// judge their free space against the wrong total.
fn store_capacity(tc: &TikvCluster, table: &mut toml::Table) -> Result<()> {
    let invalid = |reason: &str| Error::ComponentConfig {
        component: Component::Store.as_str(),
        reason: reason.to_owned(),
    };
    let raftstore = table
        .entry("raftstore")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(raftstore) = raftstore else {
        return Err(invalid("`raftstore` must be a table"));
    };
    if raftstore.contains_key("capacity") {
        return Ok(());
    }
    let size = &tc.spec.store.common.storage.size;
    let bytes = quantity_bytes(size)
        .ok_or_else(|| invalid(&format!("storage.size {size:?} is not a byte quantity")))?;
    let bytes = i64::try_from(bytes).map_err(|_| invalid("storage.size is too large"))?;
    raftstore.insert("capacity".into(), toml::Value::Integer(bytes));
    Ok(())
}

/// The bytes of a Kubernetes quantity as [`crate::crd::QUANTITY_PATTERN`] admits it (`10Gi`,
/// `500M`, `1.5Ti`), rounded down.
pub(crate) fn quantity_bytes(q: &str) -> Option<u64> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let factor: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    // Exact: the fraction as digits over a power of ten (1.5Ti is 1.5 * 2^40, no float).
    let digits = |s: &str| -> Option<u128> {
        if s.is_empty() {
            Some(0)
        } else {
            s.parse().ok()
        }
    };
    let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let whole = digits(whole)?.checked_mul(u128::from(factor))?;
    let part = digits(fraction)?.checked_mul(u128::from(factor))? / scale;
    let bytes = whole.checked_add(part)?;
    u64::try_from(bytes).ok()
}

/// `<cluster>-<component>-config` with one key, `<component>.toml`.
pub fn config_map(tc: &TikvCluster, c: Component) -> Result<ConfigMap> {
    Ok(ConfigMap {
        metadata: metadata(tc, c, config_map_name(tc, c))?,
        data: Some(BTreeMap::from([(c.config_file(), render_config(tc, c)?)])),
        ..ConfigMap::default()
    })
}

/// FNV-1a of the rendered config: stable across builds and platforms, unlike `DefaultHasher`.
pub(crate) fn config_hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::cluster;
    use super::*;
    use crate::crd::TikvClusterSpec;

    #[test]
    fn placement_config_takes_cluster_fields_over_user_keys() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.max_replicas = 5;
        tc.spec.placement.common.config =
            Some("max-replicas = 1\nmax-store-down-time = \"10m\"\n".into());
        let text = render_config(&tc, Component::Placement).unwrap();
        let t: toml::Table = text.parse().unwrap();
        assert_eq!(t["max-replicas"].as_integer(), Some(5));
        assert_eq!(t["max-store-down-time"].as_str(), Some("10m"));
        let labels = t["location-labels"].as_array().unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels[0].as_str(), Some("zone"));
        assert!(
            text.contains("[topology]\nsource = \"kubernetes\"\n"),
            "{text}"
        );
    }

    #[test]
    fn topology_source_is_kubernetes_and_keeps_other_topology_keys() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.placement.common.config =
            Some("[topology]\nsource = \"static\"\nrefresh-interval = \"1m\"\n".into());
        let text = render_config(&tc, Component::Placement).unwrap();
        let t: toml::Table = text.parse().unwrap();
        assert_eq!(t["topology"]["source"].as_str(), Some("kubernetes"));
        assert_eq!(t["topology"]["refresh-interval"].as_str(), Some("1m"));
        tc.spec.placement.common.config = Some("topology = 3\n".into());
        let err = render_config(&tc, Component::Placement).unwrap_err();
        assert!(
            err.to_string().contains("`topology` must be a table"),
            "{err}"
        );
        let store = render_config(&cluster(TikvClusterSpec::default()), Component::Store).unwrap();
        assert!(!store.contains("topology"), "{store}");
    }

    #[test]
    fn store_config_is_the_users_toml() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.store.common.config = Some("[raftstore]\nregion-max-size = 1024\n".into());
        let cm = config_map(&tc, Component::Store).unwrap();
        let text = &cm.data.unwrap()["store.toml"];
        let t: toml::Table = text.parse().unwrap();
        assert_eq!(t["raftstore"]["region-max-size"].as_integer(), Some(1024));
        assert!(!t.contains_key("max-replicas"));
    }

    #[test]
    fn store_capacity_is_the_volume_size_unless_the_user_sets_one() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.store.common.storage.size = "2Gi".into();
        let t: toml::Table = render_config(&tc, Component::Store)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(t["raftstore"]["capacity"].as_integer(), Some(2 << 30));
        tc.spec.store.common.config = Some("[raftstore]\ncapacity = 4096\n".into());
        let t: toml::Table = render_config(&tc, Component::Store)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(t["raftstore"]["capacity"].as_integer(), Some(4096));
        tc.spec.store.common.config = Some("raftstore = 1\n".into());
        let err = render_config(&tc, Component::Store).unwrap_err();
        assert!(
            err.to_string().contains("`raftstore` must be a table"),
            "{err}"
        );
        let placement = render_config(&tc, Component::Placement).unwrap();
        assert!(!placement.contains("capacity"), "{placement}");
    }

    #[test]
    fn quantities_convert_to_bytes() {
        for (q, bytes) in [
            ("10Gi", 10u64 << 30),
            ("500M", 500_000_000),
            ("1.5Ti", 3 << 39),
            ("0.5Gi", 1 << 29),
            (".25Ki", 256),
            ("100", 100),
            ("1k", 1000),
            ("2E", 2_000_000_000_000_000_000),
        ] {
            assert_eq!(quantity_bytes(q), Some(bytes), "{q}");
        }
        for bad in ["", "Gi", "10X", "1.2.3Gi", "100Ei", "-1Gi"] {
            assert_eq!(quantity_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_toml_names_the_field() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.store.common.config = Some("region-max-size = = 1".into());
        let err = render_config(&tc, Component::Store).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.store.config is not valid TOML"),
            "{err}"
        );
    }

    #[test]
    fn config_hash_is_stable() {
        assert_eq!(config_hash(""), "cbf29ce484222325");
        assert_ne!(config_hash("a"), config_hash("b"));
    }
}
