//! Placement configuration: [`Config`], loaded from a TOML file (`--config`) and overridden by
//! command-line flags, then checked once by [`Config::validate`] at startup.
//!
//! Field names are kebab-case as in pd-server's config file. Durations are written the way PD
//! writes them (`"3s"`, `"30m"`, `"500ms"`) and held as [`ReadableDuration`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Placement driver configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Member name, reported by GetMembers and the HTTP API. Default `"pd"`.
    pub name: String,
    /// URL to listen on for gRPC, HTTP and etcd clients. Default `"http://127.0.0.1:2379"`.
    /// Port 0 picks a free port (tests).
    pub client_urls: String,
    /// URL that clients are told to use. Default: `client-urls` (with the real port when the
    /// listen port is 0).
    pub advertise_client_urls: Option<String>,
    /// URL to listen on for the other placement members' raft traffic (and the joins of members
    /// added later); bound only when `initial-cluster` is set. Default `"http://127.0.0.1:2380"`.
    pub peer_urls: String,
    /// Advertised peer URL. Default: `peer-urls`.
    pub advertise_peer_urls: Option<String>,
    /// The members that start the group together, `name=peer-url,...` as pd-server's
    /// `--initial-cluster`. Unset: this member alone. A member whose data directory already
    /// holds raft state ignores it; a member missing from a running group's configuration asks
    /// to join it.
    pub initial_cluster: Option<String>,
    /// Directory holding the metadata RocksDB. Default `"default.{name}"`, as pd-server.
    pub data_dir: Option<PathBuf>,
    /// Cluster id for a new data directory; 0 generates one. Default 0.
    pub cluster_id: u64,
    /// Replicas per region. Default 3.
    pub max_replicas: u64,
    /// How far ahead of the clock the TSO high-water mark is persisted. Default `"3s"`.
    pub tso_save_interval: ReadableDuration,
    /// After this long without a heartbeat a store counts as down. Default `"30m"`.
    pub max_store_down_time: ReadableDuration,
    /// Store label keys that describe topology, outermost first (e.g. zone, rack, host).
    /// Default empty.
    pub location_labels: Vec<String>,
    /// One of `location-labels` (PD's `replication.isolation-level`): a new replica never
    /// goes into a domain at that level already holding a replica of the region; a region
    /// stays under-replicated instead. Empty (the default) turns the constraint off.
    pub isolation_level: String,
    /// Replica and leader scheduling (`[schedule]`).
    pub schedule: ScheduleConfig,
    /// Where store topology labels come from (`[topology]`).
    pub topology: TopologyConfig,
    /// Test-only switches (`[debug]`).
    pub debug: DebugConfig,
}

/// The `[debug]` section: switches for tests, never for production.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DebugConfig {
    /// Serve `POST /debug/fail/{meta-write, raft-panic}` and `POST /debug/clock-offset/{ms}` on
    /// the client port. The first make the metadata engine's writes fail (as a full disk
    /// would) or the raft thread panic, so tests can watch the member stop; the second shifts
    /// the wall clock the timestamp oracle reads, as a skewed clock would. Default false.
    pub fault_injection: bool,
}

/// Where store topology labels (`region`, `zone`, `host`) come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelSource {
    /// Labels are what each store registers with (its own flags or config). The default.
    #[default]
    Static,
    /// Labels are derived from each store's pod and that pod's node through the Kubernetes
    /// API ([`crate::topology`]); labels a store sets itself still win.
    Kubernetes,
}

/// The `[topology]` section: how placement learns the topology of its stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TopologyConfig {
    /// `"static"` (default: labels come from the stores) or `"kubernetes"`.
    pub source: LabelSource,
    /// Namespace of the store pods, used for every lookup when set. Default empty: the
    /// namespace in the store's DNS name (`pod.peer-svc.ns.svc`), else `$POD_NAMESPACE`
    /// (stores advertising an IP are then looked up in all namespaces).
    pub namespace: String,
    /// How often every store's labels are re-derived. Minimum `"1s"`; default `"30s"`.
    pub refresh_interval: ReadableDuration,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            source: LabelSource::Static,
            namespace: String::new(),
            refresh_interval: ReadableDuration(Duration::from_secs(30)),
        }
    }
}

/// The `[schedule]` section: how much scheduling may run at once. A limit of 0 turns that
/// kind of scheduling off, as in PD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Replica operators (add, promote, remove a peer) running at once in the cluster;
    /// 0 disables the replica checker. Count. Default 64 (PD's).
    pub replica_schedule_limit: u64,
    /// Operators adding a peer to one store at once (each costs that store a snapshot).
    /// Count. Default 4.
    pub store_add_peer_limit: u64,
    /// Leader transfers for balance running at once; 0 disables leader balancing. Count.
    /// Default 4 (PD's).
    pub leader_schedule_limit: u64,
    /// Balance-region operators (moving a replica to an emptier store) running at once;
    /// 0 disables region balancing. Count. Default 4 (PD's is 2048; ours moves data
    /// gently).
    pub region_schedule_limit: u64,
    /// A peer its region's leader has reported pending (needing a snapshot, or far behind)
    /// in every heartbeat for this long is replaced like a down one: a new replica goes
    /// elsewhere and the stuck one is removed. At least 1s. Default `"10m"` (TiKV's
    /// `max-peer-down-duration`, after which a silent peer counts as down).
    pub max_pending_peer_time: ReadableDuration,
    /// A store whose available space is under `1 - low-space-ratio` of its capacity is low
    /// on space: no replica is added to it or moved onto it (PD's `low-space-ratio`).
    /// Between 0 and 1, exclusive. Default 0.8 (PD's).
    pub low_space_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            replica_schedule_limit: 64,
            store_add_peer_limit: 4,
            leader_schedule_limit: 4,
            region_schedule_limit: 4,
            max_pending_peer_time: ReadableDuration(Duration::from_secs(10 * 60)),
            low_space_ratio: 0.8,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "pd".to_owned(),
            client_urls: "http://127.0.0.1:2379".to_owned(),
            advertise_client_urls: None,
            peer_urls: "http://127.0.0.1:2380".to_owned(),
            advertise_peer_urls: None,
            initial_cluster: None,
            data_dir: None,
            cluster_id: 0,
            max_replicas: 3,
            tso_save_interval: ReadableDuration(Duration::from_secs(3)),
            max_store_down_time: ReadableDuration(Duration::from_secs(30 * 60)),
            location_labels: Vec::new(),
            isolation_level: String::new(),
            schedule: ScheduleConfig::default(),
            topology: TopologyConfig::default(),
            debug: DebugConfig::default(),
        }
    }
}

impl Config {
    /// Reads a TOML config file. Missing fields keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| Error::ConfigParse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: &str| Error::Config {
            field,
            reason: reason.to_owned(),
        };
        if self.name.trim().is_empty() {
            return Err(bad("name", "must not be empty"));
        }
        self.listen_addr()?;
        if let Some(url) = &self.advertise_client_urls {
            check_host_port(first_url(url)).map_err(|r| bad("advertise-client-urls", &r))?;
        }
        check_host_port(first_url(&self.peer_urls)).map_err(|r| bad("peer-urls", &r))?;
        if let Some(url) = &self.advertise_peer_urls {
            check_host_port(first_url(url)).map_err(|r| bad("advertise-peer-urls", &r))?;
        }
        if let Some(spec) = &self.initial_cluster {
            crate::member::parse_initial_cluster(spec)?;
        }
        if self.max_replicas == 0 {
            return Err(bad("max-replicas", "must be at least 1"));
        }
        if self.tso_save_interval.0 < Duration::from_millis(100) {
            return Err(bad("tso-save-interval", "must be at least 100ms"));
        }
        if self.max_store_down_time.0 < Duration::from_secs(1) {
            return Err(bad("max-store-down-time", "must be at least 1s"));
        }
        for (i, label) in self.location_labels.iter().enumerate() {
            if label.is_empty() || self.location_labels[..i].contains(label) {
                return Err(bad(
                    "location-labels",
                    "labels must be non-empty and unique",
                ));
            }
        }
        check_isolation_level(&self.isolation_level, &self.location_labels)
            .map_err(|r| bad("isolation-level", &r))?;
        if self.schedule.max_pending_peer_time.0 < Duration::from_secs(1) {
            return Err(bad("schedule.max-pending-peer-time", "must be at least 1s"));
        }
        let ratio = self.schedule.low_space_ratio;
        if !(ratio > 0.0 && ratio < 1.0) {
            return Err(bad(
                "schedule.low-space-ratio",
                "must be between 0 and 1, exclusive",
            ));
        }
        if self.schedule.replica_schedule_limit > 0 && self.schedule.store_add_peer_limit == 0 {
            return Err(bad(
                "schedule.store-add-peer-limit",
                "must be at least 1 while schedule.replica-schedule-limit is not 0",
            ));
        }
        if !self.topology.namespace.is_empty() && !is_dns_label(&self.topology.namespace) {
            return Err(bad(
                "topology.namespace",
                "must be a Kubernetes namespace name (lowercase letters, digits and `-`, \
                 at most 63 characters)",
            ));
        }
        if self.topology.refresh_interval.0 < Duration::from_secs(1) {
            return Err(bad("topology.refresh-interval", "must be at least 1s"));
        }
        Ok(())
    }

    /// The socket address from the first of `client-urls`.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        parse_url_addr(first_url(&self.client_urls)).map_err(|reason| Error::Config {
            field: "client-urls",
            reason,
        })
    }

    /// The data directory, defaulting to `default.{name}` like pd-server.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("default.{}", self.name)))
    }

    /// The socket address to bind for peer traffic, from the first of `peer-urls`.
    pub fn peer_listen_addr(&self) -> Result<SocketAddr> {
        parse_url_addr(first_url(&self.peer_urls)).map_err(|reason| Error::Config {
            field: "peer-urls",
            reason,
        })
    }

    /// Advertised peer URLs.
    pub fn peer_urls(&self) -> Vec<String> {
        split_urls(
            self.advertise_peer_urls
                .as_deref()
                .unwrap_or(&self.peer_urls),
        )
    }
}

/// Checks that `level` is empty or one of `labels` (PD's rule for `isolation-level`).
pub fn check_isolation_level(level: &str, labels: &[String]) -> std::result::Result<(), String> {
    if level.is_empty() || labels.iter().any(|l| l == level) {
        return Ok(());
    }
    Err(format!(
        "`{level}` must be empty or one of location-labels [{}]",
        labels.join(", ")
    ))
}

/// Splits a comma-separated URL list.
pub fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An RFC 1123 label, as Kubernetes namespace and pod names are: 1 to 63 lowercase letters,
/// digits and `-`, starting and ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && ok_end(s.chars().next())
        && ok_end(s.chars().last())
}

fn first_url(urls: &str) -> &str {
    urls.split(',').next().unwrap_or("").trim()
}

/// Parses `http://host:port` (scheme optional) into a socket address.
/// Checks an advertised URL: `http(s)://host:port`, host an IP or DNS name.
fn check_host_port(url: &str) -> std::result::Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url)
        .trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("`{url}` is not http://host:port"))?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    if !host_ok || port.parse::<u16>().is_err() {
        return Err(format!("`{url}` is not http://host:port"));
    }
    Ok(())
}

fn parse_url_addr(url: &str) -> std::result::Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let hostport = rest.trim_end_matches('/');
    let hostport = hostport.replace("localhost:", "127.0.0.1:");
    hostport
        .parse()
        .map_err(|e| format!("`{url}` is not http://ip:port: {e}"))
}

/// A duration written as `"3s"`, `"30m"`, `"1h"`, `"500ms"` or a combination (`"1m30s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadableDuration(pub Duration);

impl FromStr for ReadableDuration {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut total = Duration::ZERO;
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err("empty duration".to_owned());
        }
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("`{s}`: expected a number"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = match &rest[..unit_len] {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                other => return Err(format!("`{s}`: unknown unit `{other}` (ms, s, m, h)")),
            };
            total += unit;
            rest = &rest[unit_len..];
        }
        Ok(ReadableDuration(total))
    }
}

impl fmt::Display for ReadableDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for ReadableDuration {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ReadableDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_urls_may_name_hosts() {
        let mut c = Config {
            advertise_client_urls: Some("http://pd-0.pd-peer.db.svc:2379".into()),
            peer_urls: "http://pd-0.pd-peer.db.svc:2380".into(),
            ..Config::default()
        };
        c.validate().unwrap();
        c.advertise_client_urls = Some("http://bad host:2379".into());
        assert!(c.validate().is_err());
        c.advertise_client_urls = Some("http://host:notaport".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn defaults_validate() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.listen_addr().unwrap().port(), 2379);
        assert_eq!(c.data_dir(), PathBuf::from("default.pd"));
    }

    #[test]
    fn parses_toml_with_durations() {
        let c: Config = toml::from_str(
            "name = \"pd-1\"\nmax-replicas = 1\ntso-save-interval = \"1m30s\"\n\
             location-labels = [\"zone\", \"host\"]\nisolation-level = \"zone\"\n",
        )
        .unwrap();
        assert_eq!(c.isolation_level, "zone");
        assert_eq!(c.name, "pd-1");
        assert_eq!(c.max_replicas, 1);
        assert_eq!(c.tso_save_interval.0, Duration::from_secs(90));
        assert_eq!(c.max_store_down_time.0, Duration::from_secs(1800));
        c.validate().unwrap();
    }

    #[test]
    fn rejects_bad_fields_by_name() {
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    max_replicas: 0,
                    ..Config::default()
                },
                "max-replicas",
            ),
            (
                Config {
                    client_urls: "http://nohost".into(),
                    ..Config::default()
                },
                "client-urls",
            ),
            (
                Config {
                    location_labels: vec!["zone".into(), "zone".into()],
                    ..Config::default()
                },
                "location-labels",
            ),
            (
                Config {
                    location_labels: vec!["zone".into(), "host".into()],
                    isolation_level: "rack".into(),
                    ..Config::default()
                },
                "isolation-level",
            ),
            (
                Config {
                    isolation_level: "zone".into(),
                    ..Config::default()
                },
                "isolation-level",
            ),
            (
                Config {
                    schedule: ScheduleConfig {
                        store_add_peer_limit: 0,
                        ..ScheduleConfig::default()
                    },
                    ..Config::default()
                },
                "schedule.store-add-peer-limit",
            ),
            (
                Config {
                    schedule: ScheduleConfig {
                        max_pending_peer_time: ReadableDuration(Duration::from_millis(500)),
                        ..ScheduleConfig::default()
                    },
                    ..Config::default()
                },
                "schedule.max-pending-peer-time",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        let err = toml::from_str::<Config>("[schedule]\nbogus-limit = 1\n").unwrap_err();
        assert!(err.to_string().contains("bogus-limit"), "{err}");
    }

    #[test]
    fn parses_schedule_section() {
        let c: Config = toml::from_str(
            "[schedule]\nleader-schedule-limit = 0\nstore-add-peer-limit = 2\n\
             max-pending-peer-time = \"5m\"\n",
        )
        .unwrap();
        assert_eq!(c.schedule.max_pending_peer_time.0, Duration::from_secs(300));
        assert_eq!(
            Config::default().schedule.max_pending_peer_time.0,
            Duration::from_secs(600)
        );
        assert_eq!(c.schedule.leader_schedule_limit, 0);
        assert_eq!(c.schedule.store_add_peer_limit, 2);
        assert_eq!(c.schedule.replica_schedule_limit, 64);
        c.validate().unwrap();
    }

    #[test]
    fn parses_debug_section() {
        assert!(!Config::default().debug.fault_injection);
        let c: Config = toml::from_str("[debug]\nfault-injection = true\n").unwrap();
        assert!(c.debug.fault_injection);
        c.validate().unwrap();
        let err = toml::from_str::<Config>("[debug]\nfail = 1\n").unwrap_err();
        assert!(err.to_string().contains("fail"), "{err}");
    }

    #[test]
    fn parses_topology_section() {
        let c = Config::default();
        assert_eq!(c.topology.source, LabelSource::Static);
        assert_eq!(c.topology.refresh_interval.0, Duration::from_secs(30));
        let c: Config = toml::from_str(
            "[topology]\nsource = \"kubernetes\"\nnamespace = \"db\"\nrefresh-interval = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(c.topology.source, LabelSource::Kubernetes);
        assert_eq!(c.topology.namespace, "db");
        assert_eq!(c.topology.refresh_interval.0, Duration::from_secs(5));
        c.validate().unwrap();

        let err = toml::from_str::<Config>("[topology]\nsource = \"consul\"\n").unwrap_err();
        assert!(err.to_string().contains("kubernetes"), "{err}");
        let err = toml::from_str::<Config>("[topology]\nlabels = 1\n").unwrap_err();
        assert!(err.to_string().contains("labels"), "{err}");
        for (toml_text, field) in [
            (
                "[topology]\nrefresh-interval = \"500ms\"\n",
                "topology.refresh-interval",
            ),
            ("[topology]\nnamespace = \"Bad_NS\"\n", "topology.namespace"),
            ("[topology]\nnamespace = \"-db\"\n", "topology.namespace"),
        ] {
            let c: Config = toml::from_str(toml_text).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn duration_round_trip() {
        for (text, ms) in [
            ("500ms", 500),
            ("3s", 3000),
            ("30m", 1_800_000),
            ("2h", 7_200_000),
        ] {
            let d: ReadableDuration = text.parse().unwrap();
            assert_eq!(d.0.as_millis(), ms);
            assert_eq!(d.to_string(), text);
        }
        assert!("3x".parse::<ReadableDuration>().is_err());
        assert!("".parse::<ReadableDuration>().is_err());
    }
}
