//! JSON shapes of PD's HTTP API (`server/api/*.go`), built from the cluster view: stores with
//! their status, regions with hex-encoded upper-case keys and sizes in MiB, members, keyspaces.

use std::time::Duration;

use proto::keyspacepb::{KeyspaceMeta, KeyspaceState};
use proto::{metapb, pdpb};
use serde_json::{json, Value};

use crate::cluster::{RegionInfo, RegionMap, StoreInfo};
use crate::schedule::{OpStatus, Operator, Settings};

/// Upper-case hex, as PD's `HexRegionKeyStr`.
pub fn hex_upper(key: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(key.len() * 2);
    for b in key {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xF) as usize] as char);
    }
    s
}

/// Bytes as PD's `ByteSize` prints them (`"1.5GiB"`).
pub fn byte_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{}", UNITS[unit])
}

/// Unix milliseconds as RFC 3339 UTC (`2024-01-02T03:04:05Z`).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A duration as Go prints it (`"1h2m3s"`).
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

fn role_name(role: i32) -> &'static str {
    metapb::PeerRole::try_from(role)
        .map(|r| r.as_str_name())
        .unwrap_or("Voter")
}

pub fn peer(p: &metapb::Peer) -> Value {
    json!({
        "id": p.id,
        "store_id": p.store_id,
        "role": p.role,
        "role_name": role_name(p.role),
        "is_learner": p.role == metapb::PeerRole::Learner as i32,
    })
}

/// A region as `/pd/api/v1/regions` lists it.
pub fn region(r: &RegionInfo) -> Value {
    let epoch = r.epoch();
    let mib = r.approximate_size / (1 << 20);
    let size_mib = if r.approximate_size > 0 {
        mib.max(1)
    } else {
        0
    };
    json!({
        "id": r.id(),
        "start_key": hex_upper(&r.meta.start_key),
        "end_key": hex_upper(&r.meta.end_key),
        "epoch": { "conf_ver": epoch.conf_ver, "version": epoch.version },
        "peers": r.meta.peers.iter().map(peer).collect::<Vec<_>>(),
        "leader": r.leader.as_ref().map(peer).unwrap_or_else(|| json!({})),
        "down_peers": r.down_peers.iter().map(down_peer).collect::<Vec<_>>(),
        "pending_peers": r.pending_peers.iter().map(peer).collect::<Vec<_>>(),
        "written_bytes": r.bytes_written,
        "read_bytes": r.bytes_read,
        "written_keys": r.keys_written,
        "read_keys": r.keys_read,
        "approximate_size": size_mib,
        "approximate_keys": r.approximate_keys,
    })
}

fn down_peer(p: &pdpb::PeerStats) -> Value {
    json!({
        "peer": p.peer.as_ref().map(peer),
        "down_seconds": p.down_seconds,
    })
}

/// `{"count", "regions"}` for a list of regions.
pub fn regions<'a>(list: impl Iterator<Item = &'a RegionInfo>) -> Value {
    let regions: Vec<Value> = list.map(region).collect();
    json!({ "count": regions.len(), "regions": regions })
}

/// Inputs for a store's `status` that come from outside the store itself.
pub struct StoreContext<'a> {
    pub regions: &'a RegionMap,
    pub now_ms: u64,
    pub state_name: &'static str,
}

/// A store as `/pd/api/v1/stores` lists it: `{"store": {...}, "status": {...}}`.
pub fn store(s: &StoreInfo, ctx: &StoreContext<'_>) -> Value {
    let m = &s.meta;
    let labels: Vec<Value> = m
        .labels
        .iter()
        .map(|l| json!({"key": l.key, "value": l.value}))
        .collect();
    let (mut leader_count, mut region_count, mut leader_size, mut region_size) = (0u64, 0, 0, 0);
    for r in ctx.regions.iter() {
        let mib = r.approximate_size / (1 << 20);
        if r.meta.peers.iter().any(|p| p.store_id == m.id) {
            region_count += 1;
            region_size += mib;
        }
        if r.leader.is_some_and(|l| l.store_id == m.id) {
            leader_count += 1;
            leader_size += mib;
        }
    }
    let stats = s.stats.clone().unwrap_or_default();
    let start_ms = (m.start_timestamp.max(0) as u64) * 1000;
    let mut status = json!({
        "capacity": byte_size(stats.capacity),
        "available": byte_size(stats.available),
        "used_size": byte_size(stats.used_size),
        "leader_count": leader_count,
        "leader_weight": 1,
        "leader_score": leader_size,
        "leader_size": leader_size,
        "region_count": region_count,
        "region_weight": 1,
        "region_score": region_size,
        "region_size": region_size,
        "sending_snap_count": stats.sending_snap_count,
        "receiving_snap_count": stats.receiving_snap_count,
        "is_busy": stats.is_busy,
    });
    if start_ms > 0 {
        status["start_ts"] = json!(rfc3339(start_ms));
        let up = Duration::from_millis(ctx.now_ms.saturating_sub(start_ms));
        status["uptime"] = json!(go_duration(up));
    }
    if let Some(hb) = s.last_heartbeat_ms {
        status["last_heartbeat_ts"] = json!(rfc3339(hb));
    }
    json!({
        "store": {
            "id": m.id,
            "address": m.address,
            "state": m.state,
            "labels": labels,
            "version": m.version,
            "peer_address": m.peer_address,
            "status_address": m.status_address,
            "git_hash": m.git_hash,
            "start_timestamp": m.start_timestamp,
            "deploy_path": m.deploy_path,
            "last_heartbeat": m.last_heartbeat,
            "node_state": m.node_state,
            "state_name": ctx.state_name,
        },
        "status": status,
    })
}

/// An operator as `/pd/api/v1/operators` lists it: PD's `OpObject` fields (`desc`, `brief`,
/// `region_id`, `region_epoch`, `kind`, `timeout`, `status`) plus the steps in PD's wording,
/// the index of the current one and the creation time. A running operator past its timeout
/// shows `TIMEOUT`, as in PD.
pub fn operator(op: &Operator, now_ms: u64) -> Value {
    let status = match op.status {
        OpStatus::Running if op.is_timed_out(now_ms) => OpStatus::Timeout,
        s => s,
    };
    let steps = op.step_strings();
    json!({
        "desc": op.desc,
        "brief": steps.join(", "),
        "region_id": op.region_id,
        "region_epoch": { "conf_ver": op.epoch.conf_ver, "version": op.epoch.version },
        "kind": op.kind.to_string(),
        "timeout": go_duration(op.timeout),
        "status": status.name(),
        "steps": steps,
        "current_step": op.current,
        "create_time": rfc3339(op.created_ms),
    })
}

/// `/pd/api/v1/config/schedule`: PD's keys for the settings placement uses.
pub fn schedule_config(s: &Settings) -> Value {
    json!({
        "replica-schedule-limit": s.replica_schedule_limit,
        "leader-schedule-limit": s.leader_schedule_limit,
        "region-schedule-limit": s.region_schedule_limit,
        "store-add-peer-limit": s.store_add_peer_limit,
        "max-store-down-time": go_duration(s.max_store_down_time),
        "max-pending-peer-time": go_duration(s.max_pending_peer_time),
        "low-space-ratio": s.low_space_ratio,
    })
}

/// A PD member.
pub fn member(m: &pdpb::Member) -> Value {
    json!({
        "name": m.name,
        "member_id": m.member_id,
        "peer_urls": m.peer_urls,
        "client_urls": m.client_urls,
        "deploy_path": m.deploy_path,
        "binary_version": m.binary_version,
        "git_hash": m.git_hash,
    })
}

/// A keyspace as PD's v2 API shows it.
pub fn keyspace(k: &KeyspaceMeta) -> Value {
    let state = KeyspaceState::try_from(k.state)
        .map(|s| s.as_str_name())
        .unwrap_or("ENABLED");
    json!({
        "id": k.id,
        "name": k.name,
        "state": state,
        "created_at": k.created_at,
        "state_changed_at": k.state_changed_at,
        "config": k.config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_pd() {
        assert_eq!(hex_upper(b"\x74\x80\xab"), "7480AB");
        assert_eq!(hex_upper(b""), "");
        assert_eq!(byte_size(0), "0B");
        assert_eq!(byte_size(1536), "1.5KiB");
        assert_eq!(byte_size(3 << 30), "3GiB");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199_000), "2024-02-29T23:59:59Z");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_secs(59)), "59s");
    }
}
