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
    Ok(toml::to_string(&table).expect("a toml::Table always serializes"))
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
