//! Reading the cluster's state the way PD tools do: placement's PD-compatible HTTP API.
//!
//! [`PdHttp`] fetches `/pd/api/v1/health`, `/stores` and `/regions` (PD's JSON shapes: regions
//! with their peers, roles, epochs, pending and down peers; stores with their counts;
//! running operators) and a
//! store's status `/health`; [`PdHttp::send`] is the plain request the status-port helpers use.
//! [`check_ready`] and [`check_leaders_confirmed`] are the pure readiness rules used by
//! `Cluster::must_ready`: every expected store is registered and `Up`, there is at least one
//! region, and every region has a leader, which its store confirms. Failures are returned as
//! observation strings for the wait loop to report.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

/// `GET /pd/api/v1/stores`.
#[derive(Clone, Debug, Deserialize)]
pub struct StoresInfo {
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub stores: Option<Vec<StoreInfo>>,
}

/// One element of `stores`.
#[derive(Clone, Debug, Deserialize)]
pub struct StoreInfo {
    pub store: StoreMeta,
    #[serde(default)]
    pub status: StoreStatusInfo,
}

/// `stores[].status`: the counts placement derives from region heartbeats.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StoreStatusInfo {
    #[serde(default)]
    pub leader_count: u64,
    #[serde(default)]
    pub region_count: u64,
    /// Disk sizes as PD prints them (`"96MiB"`); see [`parse_byte_size`].
    #[serde(default)]
    pub capacity: String,
    #[serde(default)]
    pub available: String,
    #[serde(default)]
    pub used_size: String,
}

/// Bytes of a size as PD's HTTP API prints it (`"0B"`, `"1.5KiB"`, `"96MiB"`, `"2GiB"`).
pub fn parse_byte_size(text: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 6] = [
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ];
    let (number, scale) = UNITS
        .iter()
        .find_map(|(unit, scale)| text.strip_suffix(unit).map(|n| (n, *scale)))?;
    let value: f64 = number.trim().parse().ok()?;
    (value >= 0.0).then_some((value * scale as f64) as u64)
}

/// `stores[].store`.
#[derive(Clone, Debug, Deserialize)]
pub struct StoreMeta {
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub state_name: String,
    /// Location labels (`zone`, `host`, ...).
    #[serde(default)]
    pub labels: Vec<StoreLabel>,
}

/// `stores[].store.labels[]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StoreLabel {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// `GET /pd/api/v1/regions`.
#[derive(Clone, Debug, Deserialize)]
pub struct RegionsInfo {
    #[serde(default)]
    pub count: u64,
    #[serde(default)]
    pub regions: Option<Vec<RegionInfo>>,
}

/// One element of `regions`. Keys are upper-case hex, as PD prints them.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RegionInfo {
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub start_key: String,
    #[serde(default)]
    pub end_key: String,
    #[serde(default)]
    pub epoch: EpochInfo,
    #[serde(default)]
    pub peers: Vec<PeerInfo>,
    #[serde(default)]
    pub leader: Option<PeerInfo>,
    #[serde(default)]
    pub pending_peers: Vec<PeerInfo>,
    #[serde(default)]
    pub down_peers: Vec<DownPeerInfo>,
}

/// `regions[].epoch`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct EpochInfo {
    #[serde(default)]
    pub conf_ver: u64,
    #[serde(default)]
    pub version: u64,
}

/// `regions[].leader`, `regions[].peers[]`; `role_name` is `Voter`, `Learner`, ...
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PeerInfo {
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub store_id: u64,
    #[serde(default)]
    pub role_name: String,
}

/// `regions[].down_peers[]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DownPeerInfo {
    #[serde(default)]
    pub peer: Option<PeerInfo>,
    #[serde(default)]
    pub down_seconds: u64,
}

/// One element of `GET /pd/api/v1/operators`: a running scheduling operator.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct OperatorInfo {
    #[serde(default)]
    pub region_id: u64,
    #[serde(default)]
    pub desc: String,
    #[serde(default)]
    pub brief: String,
}

/// An HTTP client for placement's PD API and the stores' status ports.
#[derive(Clone, Debug)]
pub struct PdHttp {
    http: reqwest::Client,
}

impl Default for PdHttp {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a plain HTTP client always builds");
        PdHttp { http }
    }
}

impl PdHttp {
    /// Sends `method url` and returns the body of a 2xx answer, else what went wrong.
    pub async fn send(&self, method: reqwest::Method, url: &str) -> Result<String, String> {
        let what = format!("{method} {url}");
        answer(what, self.http.request(method, url)).await
    }

    /// `POST url` with a JSON body; the body of a 2xx answer, else what went wrong.
    pub async fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<String, String> {
        answer(format!("POST {url} {body}"), self.http.post(url).json(body)).await
    }

    async fn get_text(&self, url: &str) -> Result<String, String> {
        self.send(reqwest::Method::GET, url).await
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, String> {
        let body = self.get_text(url).await?;
        serde_json::from_str(&body).map_err(|e| format!("GET {url}: bad JSON ({e}): {body}"))
    }

    /// `GET http://{pd}/pd/api/v1/health` answers 2xx.
    pub async fn health(&self, pd: &str) -> Result<(), String> {
        self.get_text(&format!("http://{pd}/pd/api/v1/health"))
            .await
            .map(drop)
    }

    /// The registered stores.
    pub async fn stores(&self, pd: &str) -> Result<Vec<StoreMeta>, String> {
        let stores = self.store_infos(pd).await?;
        Ok(stores.into_iter().map(|s| s.store).collect())
    }

    /// The registered stores with their status counts.
    pub async fn store_infos(&self, pd: &str) -> Result<Vec<StoreInfo>, String> {
        let info: StoresInfo = self
            .get_json(&format!("http://{pd}/pd/api/v1/stores"))
            .await?;
        Ok(info.stores.unwrap_or_default())
    }

    /// Every store, tombstones included (`?state=0&state=1&state=2`, as pd-ctl asks).
    pub async fn all_store_infos(&self, pd: &str) -> Result<Vec<StoreInfo>, String> {
        let info: StoresInfo = self
            .get_json(&format!(
                "http://{pd}/pd/api/v1/stores?state=0&state=1&state=2"
            ))
            .await?;
        Ok(info.stores.unwrap_or_default())
    }

    /// The regions placement knows.
    pub async fn regions(&self, pd: &str) -> Result<Vec<RegionInfo>, String> {
        let info: RegionsInfo = self
            .get_json(&format!("http://{pd}/pd/api/v1/regions"))
            .await?;
        Ok(info.regions.unwrap_or_default())
    }

    /// The operators placement is running (`GET /pd/api/v1/operators`).
    pub async fn operators(&self, pd: &str) -> Result<Vec<OperatorInfo>, String> {
        self.get_json(&format!("http://{pd}/pd/api/v1/operators"))
            .await
    }

    /// The name of the placement leader (`GET /pd/api/v1/leader`).
    pub async fn leader_name(&self, pd: &str) -> Result<String, String> {
        let leader: serde_json::Value = self
            .get_json(&format!("http://{pd}/pd/api/v1/leader"))
            .await?;
        leader["name"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("GET /pd/api/v1/leader: no name in {leader}"))
    }

    /// `GET http://{status}/health` on a store's status port answers 2xx.
    pub async fn store_health(&self, status_addr: &str) -> Result<(), String> {
        self.get_text(&format!("http://{status_addr}/health"))
            .await
            .map(drop)
    }
}

/// Sends `request` (described by `what` in errors) and returns the body of a 2xx answer.
async fn answer(what: String, request: reqwest::RequestBuilder) -> Result<String, String> {
    let resp = request.send().await.map_err(|e| format!("{what}: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| format!("{what}: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{what}: HTTP {status}: {body}"))
    }
}

/// The readiness rule: each address in `expected` is a registered store in state `Up`, and there
/// is at least one region, each with a leader.
pub fn check_ready(
    stores: &[StoreMeta],
    regions: &[RegionInfo],
    expected: &[String],
) -> Result<(), String> {
    for addr in expected {
        match stores.iter().find(|s| &s.address == addr) {
            None => return Err(format!("store {addr} not registered (stores: {stores:?})")),
            Some(s) if s.state_name != "Up" => {
                return Err(format!(
                    "store {addr} (id {}) is {:?}, not Up",
                    s.id, s.state_name
                ))
            }
            Some(_) => {}
        }
    }
    if regions.is_empty() {
        return Err("no regions yet (cluster not bootstrapped?)".to_owned());
    }
    if let Some(r) = regions
        .iter()
        .find(|r| r.leader.as_ref().is_none_or(|l| l.store_id == 0))
    {
        return Err(format!("region {} has no leader", r.id));
    }
    Ok(())
}

/// The second half of readiness: placement's view of who leads each region is confirmed by the
/// stores themselves. `leading` maps each running store's id to the regions it says it leads (its
/// `/status`). Placement learns of a new leader only from that leader's heartbeat, so after a
/// leader is killed it keeps naming the old one (restarted, now a follower) until the election
/// ends; a client sent there meanwhile gets `NotLeader` with no hint and may exhaust its retries.
pub fn check_leaders_confirmed(
    regions: &[RegionInfo],
    leading: &HashMap<u64, Vec<u64>>,
) -> Result<(), String> {
    for r in regions {
        let Some(store) = r.leader.as_ref().map(|l| l.store_id) else {
            return Err(format!("region {} has no leader", r.id));
        };
        match leading.get(&store) {
            None => {
                return Err(format!(
                    "region {}: placement names a leader on store {store}, which is not running",
                    r.id
                ))
            }
            Some(led) if !led.contains(&r.id) => {
                return Err(format!(
                    "region {}: placement names a leader on store {store}, which does not lead it (yet)",
                    r.id
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORES: &str = r#"{"count":2,"stores":[
        {"store":{"id":1,"address":"127.0.0.1:20160","state_name":"Up","version":"x"},"status":{}},
        {"store":{"id":4,"address":"127.0.0.1:20161","state_name":"Disconnected"},"status":{}}]}"#;
    const REGIONS: &str = r#"{"count":1,"regions":[{"id":2,"start_key":"","end_key":"",
        "leader":{"id":3,"store_id":1},"peers":[{"id":3,"store_id":1}]}]}"#;

    fn parsed() -> (Vec<StoreMeta>, Vec<RegionInfo>) {
        let stores: StoresInfo = serde_json::from_str(STORES).unwrap();
        let regions: RegionsInfo = serde_json::from_str(REGIONS).unwrap();
        assert_eq!((stores.count, regions.count), (2, 1));
        (
            stores
                .stores
                .unwrap()
                .into_iter()
                .map(|s| s.store)
                .collect(),
            regions.regions.unwrap(),
        )
    }

    #[test]
    fn ready_when_expected_stores_are_up_and_regions_led() {
        let (stores, regions) = parsed();
        check_ready(&stores, &regions, &["127.0.0.1:20160".to_owned()]).unwrap();
    }

    #[test]
    fn not_ready_when_a_store_is_not_up_or_missing() {
        let (stores, regions) = parsed();
        let err = check_ready(&stores, &regions, &["127.0.0.1:20161".to_owned()]).unwrap_err();
        assert!(err.contains("Disconnected"), "{err}");
        let err = check_ready(&stores, &regions, &["127.0.0.1:1".to_owned()]).unwrap_err();
        assert!(err.contains("not registered"), "{err}");
    }

    #[test]
    fn not_ready_without_regions_or_leaders() {
        let (stores, _) = parsed();
        assert!(check_ready(&stores, &[], &[])
            .unwrap_err()
            .contains("no regions"));
        let leaderless: RegionsInfo =
            serde_json::from_str(r#"{"count":1,"regions":[{"id":9}]}"#).unwrap();
        let err = check_ready(&stores, &leaderless.regions.unwrap(), &[]).unwrap_err();
        assert!(err.contains("region 9"), "{err}");
    }

    #[test]
    fn leaders_must_be_confirmed_by_their_stores() {
        let (_, regions) = parsed();
        let leading = |led: &[u64]| HashMap::from([(1, led.to_vec()), (4, vec![])]);
        check_leaders_confirmed(&regions, &leading(&[2])).unwrap();
        let err = check_leaders_confirmed(&regions, &leading(&[])).unwrap_err();
        assert!(err.contains("does not lead it"), "{err}");
        let err = check_leaders_confirmed(&regions, &HashMap::from([(4, vec![2])])).unwrap_err();
        assert!(err.contains("not running"), "{err}");
    }

    #[test]
    fn null_lists_parse_as_empty() {
        let stores: StoresInfo = serde_json::from_str(r#"{"count":0,"stores":null}"#).unwrap();
        assert!(stores.stores.is_none());
    }
}
