//! Store configuration: a TOML file (kebab-case keys), overridden by flags,
//! validated once at startup.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lock_manager::PessimisticTxnConfig;
use crate::raftstore::RaftStoreConfig;
use crate::storage::StorageConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid config: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address (default `127.0.0.1:20160`).
    pub addr: String,
    /// Address clients and other stores use to reach this one (default: `addr`).
    pub advertise_addr: String,
    /// HTTP status address serving `/metrics` and `/health` (default `127.0.0.1:20180`).
    pub status_addr: String,
    /// Where RocksDB keeps this store's data (default `./store-data`).
    pub data_dir: PathBuf,
    /// Placement endpoints, `host:port` (default `["127.0.0.1:2379"]`).
    pub pd_endpoints: Vec<String>,
    /// Location labels reported to placement, e.g. `zone = "z1"`.
    pub labels: BTreeMap<String, String>,
    pub storage: StorageConfig,
    pub raftstore: RaftstoreSection,
    /// Lock waiting of pessimistic transactions.
    pub pessimistic_txn: PessimisticTxnConfig,
    pub debug: DebugSection,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DebugSection {
    /// Serve `/debug/raft/filters` on the status port so tests can cut raft
    /// traffic (default false; never enable in production).
    pub fault_injection: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RaftstoreSection {
    /// Raft tick, in milliseconds (default 100).
    pub raft_base_tick_interval_ms: u64,
    /// Ticks without a leader before an election (default 10).
    pub raft_election_timeout_ticks: usize,
    /// Ticks between leader heartbeats (default 2).
    pub raft_heartbeat_ticks: usize,
    /// Applied log entries kept before truncation (default 1024).
    pub raft_log_gc_threshold: u64,
    /// A leader keeps log entries a lagging follower still needs until the
    /// log is this many entries long; past it the follower gets a snapshot
    /// instead (default 50,000).
    pub raft_log_gc_count_limit: u64,
    /// ... or until the log holds this many bytes of entries (default 64 MiB).
    pub raft_log_gc_size_limit: u64,
    /// Interval between region heartbeats to placement, in ms (default 1000).
    pub region_heartbeat_interval_ms: u64,
    /// Interval between store heartbeats to placement, in ms (default 2000).
    pub store_heartbeat_interval_ms: u64,
    /// A region larger than this many bytes is split (default 144 MiB).
    pub region_max_size: u64,
    /// A region with more keys than this is split (default 1,440,000).
    pub region_max_keys: u64,
    /// How often written regions are checked for splitting, in ms (default 10000).
    pub split_check_interval_ms: u64,
    /// The store's capacity in bytes as reported to placement, at most the
    /// data directory's disk (default 0: the whole disk, as TiKV's
    /// `raftstore.capacity`).
    pub capacity: u64,
}

impl Default for RaftstoreSection {
    fn default() -> Self {
        RaftstoreSection {
            raft_base_tick_interval_ms: 100,
            raft_election_timeout_ticks: 10,
            raft_heartbeat_ticks: 2,
            raft_log_gc_threshold: 1024,
            raft_log_gc_count_limit: 50_000,
            raft_log_gc_size_limit: 64 << 20,
            region_heartbeat_interval_ms: 1000,
            store_heartbeat_interval_ms: 2000,
            region_max_size: 144 << 20,
            region_max_keys: 1_440_000,
            split_check_interval_ms: 10_000,
            capacity: 0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:20160".into(),
            advertise_addr: String::new(),
            status_addr: "127.0.0.1:20180".into(),
            data_dir: PathBuf::from("./store-data"),
            pd_endpoints: vec!["127.0.0.1:2379".into()],
            labels: BTreeMap::new(),
            storage: StorageConfig::default(),
            raftstore: RaftstoreSection::default(),
            pessimistic_txn: PessimisticTxnConfig::default(),
            debug: DebugSection::default(),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl Config {
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks every field; call once at startup, after flags are applied.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        self.addr
            .parse::<SocketAddr>()
            .map_err(|e| invalid("addr", format!("{:?}: {e}", self.addr)))?;
        self.status_addr
            .parse::<SocketAddr>()
            .map_err(|e| invalid("status-addr", format!("{:?}: {e}", self.status_addr)))?;
        if self.advertise_addr.is_empty() {
            self.advertise_addr = self.addr.clone();
        }
        if self.pd_endpoints.is_empty() {
            return Err(invalid(
                "pd-endpoints",
                "at least one placement endpoint is needed",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data-dir", "must not be empty"));
        }
        if self.storage.max_key_size == 0 {
            return Err(invalid("storage.max-key-size", "must be positive"));
        }
        if self.storage.raft_entry_max_size < 1024 {
            return Err(invalid(
                "storage.raft-entry-max-size",
                "must be at least 1024 bytes",
            ));
        }
        let s = &self.storage;
        if s.reserve_space != 0 && s.reserve_space < 1 << 20 {
            return Err(invalid(
                "storage.reserve-space",
                format!(
                    "{} bytes: must be 0 (off) or at least 1 MiB",
                    s.reserve_space
                ),
            ));
        }
        if !(10..=60_000).contains(&s.disk_check_interval_ms) {
            return Err(invalid(
                "storage.disk-check-interval-ms",
                "must be between 10 and 60000",
            ));
        }
        let r = &self.raftstore;
        if r.raft_base_tick_interval_ms == 0 || r.raft_heartbeat_ticks == 0 {
            return Err(invalid(
                "raftstore",
                "tick interval and heartbeat ticks must be positive",
            ));
        }
        if r.region_max_size == 0 || r.region_max_keys == 0 || r.split_check_interval_ms == 0 {
            return Err(invalid(
                "raftstore.region-max-size",
                "region-max-size, region-max-keys and split-check-interval-ms must be positive",
            ));
        }
        if r.raft_election_timeout_ticks <= r.raft_heartbeat_ticks {
            return Err(invalid(
                "raftstore.raft-election-timeout-ticks",
                "must exceed raft-heartbeat-ticks",
            ));
        }
        if r.raft_log_gc_count_limit <= 2 * r.raft_log_gc_threshold {
            return Err(invalid(
                "raftstore.raft-log-gc-count-limit",
                "must exceed twice raft-log-gc-threshold",
            ));
        }
        self.pessimistic_txn
            .validate()
            .map_err(|(field, reason)| invalid(field, reason))?;
        Ok(())
    }

    pub fn raftstore_config(&self) -> RaftStoreConfig {
        let mut c = RaftStoreConfig {
            base_tick: Duration::from_millis(self.raftstore.raft_base_tick_interval_ms),
            ..Default::default()
        };
        c.peer.election_tick = self.raftstore.raft_election_timeout_ticks;
        c.peer.heartbeat_tick = self.raftstore.raft_heartbeat_ticks;
        c.log_gc_threshold = self.raftstore.raft_log_gc_threshold;
        c.log_gc_count_limit = self.raftstore.raft_log_gc_count_limit;
        c.log_gc_size_limit = self.raftstore.raft_log_gc_size_limit;
        c
    }
}

/// Parses `zone=z1,host=h1` into labels.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| invalid("labels", format!("{part:?} is not key=value")))?;
        if k.trim().is_empty() || v.trim().is_empty() {
            return Err(invalid(
                "labels",
                format!("{part:?} has an empty key or value"),
            ));
        }
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Parses a byte size as TiKV's `--capacity` takes it: plain bytes (`1073741824`) or a number
/// with a binary unit, TiKV's (`512MB`, `1.5GB`, `1TB`) or Kubernetes' (`10Gi`, `500Mi`).
pub fn parse_size(s: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KI" | "KIB" => 10,
        "M" | "MB" | "MI" | "MIB" => 20,
        "G" | "GB" | "GI" | "GIB" => 30,
        "T" | "TB" | "TI" | "TIB" => 40,
        "P" | "PB" | "PI" | "PIB" => 50,
        other => {
            let reason = format!("{s:?}: unknown unit {other:?} (KB, MB, GB, TB, PB or Ki..Pi)");
            return Err(invalid("capacity", reason));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| invalid("capacity", format!("{s:?} is not a size such as 10GB")))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(invalid("capacity", format!("{s:?} is too large")));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_tikv_and_kubernetes_units() {
        for (text, bytes) in [
            ("1073741824", 1 << 30),
            ("512MB", 512 << 20),
            ("1.5GB", 3 << 29),
            ("10Gi", 10 << 30),
            (" 2 TiB ", 2 << 40),
            ("0", 0),
        ] {
            assert_eq!(parse_size(text).unwrap(), bytes, "{text}");
        }
        for bad in ["", "GB", "ten", "5XB", "-1GB", "1e3", "99999999999PB"] {
            let err = parse_size(bad).unwrap_err().to_string();
            assert!(err.contains("capacity"), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        let mut c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.advertise_addr, "127.0.0.1:20160");
        let mut bad = Config {
            addr: "nope".into(),
            ..Config::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("addr"), "{err}");
        let parsed: Result<Config, _> = toml::from_str("unknown-field = 1");
        assert!(parsed.is_err());
        let parsed: Config = toml::from_str("[storage]\nmax-key-size = 100\n").unwrap();
        assert_eq!(parsed.storage.max_key_size, 100);
    }

    #[test]
    fn pessimistic_txn_wait_is_read_and_checked() {
        let mut c: Config = toml::from_str(
            "[pessimistic-txn]\nwait-for-lock-timeout-ms = 3000\nwake-up-delay-duration-ms = 5\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.pessimistic_txn.wait_for_lock_timeout_ms, 3000);
        assert_eq!(
            Config::default().pessimistic_txn.wait_for_lock_timeout_ms,
            1000
        );
        assert_eq!(
            Config::default().pessimistic_txn.wake_up_delay_duration_ms,
            20
        );
        c.pessimistic_txn.wait_for_lock_timeout_ms = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("pessimistic-txn.wait-for-lock-timeout-ms"),
            "{err}"
        );
        c.pessimistic_txn.wait_for_lock_timeout_ms = 10;
        c.pessimistic_txn.wake_up_delay_duration_ms = 11;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("wake-up-delay-duration-ms"), "{err}");
        let bad: Result<Config, _> =
            toml::from_str("[pessimistic-txn]\nwait-for-lock-timeout = 1\n");
        assert!(bad.is_err(), "unknown keys are refused");
    }

    #[test]
    fn disk_full_settings_are_read_and_checked() {
        let d = Config::default();
        assert_eq!(d.storage.reserve_space, 5 << 30);
        assert_eq!(d.storage.disk_check_interval_ms, 1000);
        assert_eq!(d.raftstore.capacity, 0);
        let mut c: Config = toml::from_str(
            "[storage]\nreserve-space = 8388608\ndisk-check-interval-ms = 100\n\
             [raftstore]\ncapacity = 1073741824\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.storage.reserve_space, 8 << 20);
        assert_eq!(c.raftstore.capacity, 1 << 30);
        c.storage.reserve_space = 1000;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("storage.reserve-space"), "{err}");
        c.storage.reserve_space = 0;
        c.validate().unwrap();
        c.storage.disk_check_interval_ms = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("storage.disk-check-interval-ms"), "{err}");
    }

    #[test]
    fn labels_parse() {
        let l = parse_labels("zone=z1, host=h1").unwrap();
        assert_eq!(l.get("zone").map(String::as_str), Some("z1"));
        assert!(parse_labels("zone").is_err());
        assert!(parse_labels("=x").is_err());
        assert!(parse_labels("").unwrap().is_empty());
    }
}
