//! What the operator reads from placement and asks of it, through PD's HTTP API only, so the
//! same code would drive a real PD: members and leader (`/pd/api/v1/members`,
//! `/pd/api/v1/health`), stores (`/pd/api/v1/stores`) and fault tolerance
//! (`/pd/api/v1/fault-tolerance`); store drains, evict-leader schedulers, member leader
//! transfer and member removal.
//!
//! [`PlacementAdmin`] is the seam: [`HttpPlacementAdmin`] talks HTTP, reconcile tests use a
//! scripted one. The JSON is turned into status types by pure functions tested on PD-shaped
//! documents.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::builders::{peer_service_name, Component};
use crate::crd::{PlacementMember, StoreInfo, TikvCluster};
use crate::{Error, Result};

/// Everything one reconcile pass learns from placement.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlacementView {
    pub members: Vec<PlacementMember>,
    pub leader: Option<String>,
    pub stores: Vec<StoreInfo>,
    pub fault_tolerance: Option<i32>,
}

/// Reads a cluster's state from placement's PD-compatible HTTP API.
pub trait PlacementAdmin: Send + Sync {
    /// `endpoint` is a base URL such as `http://basic-placement.db.svc:2379`.
    fn view<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<PlacementView>>;

    /// Starts draining a store (`DELETE /pd/api/v1/store/{id}`: Up becomes Offline, and a
    /// Tombstone once its regions have moved). Repeating it is harmless.
    fn delete_store<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<()>>;

    /// Moves leaders off a store until removed (`POST /pd/api/v1/schedulers`
    /// `{"name": "evict-leader-scheduler", "store_id": id}`).
    fn evict_leader<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<()>>;

    /// Ends the eviction (`DELETE /pd/api/v1/schedulers/evict-leader-scheduler-{id}`).
    fn remove_evict_leader<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<()>>;

    /// Hands placement leadership to member `name` (`POST /pd/api/v1/leader/transfer/{name}`).
    fn transfer_leader<'a>(&'a self, endpoint: &'a str, name: &'a str)
        -> BoxFuture<'a, Result<()>>;

    /// Removes member `name` from the placement cluster
    /// (`DELETE /pd/api/v1/members/name/{name}`).
    fn delete_member<'a>(&'a self, endpoint: &'a str, name: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// [`PlacementAdmin`] over HTTP with reqwest.
pub struct HttpPlacementAdmin {
    http: reqwest::Client,
}

impl Default for HttpPlacementAdmin {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a reqwest client without TLS always builds");
        HttpPlacementAdmin { http }
    }
}

impl HttpPlacementAdmin {
    async fn get(&self, endpoint: &str, path: &str) -> Result<Value> {
        let url = format!("{endpoint}{path}");
        let placement = |source| Error::Placement {
            url: url.clone(),
            source,
        };
        let resp = self.http.get(&url).send().await.map_err(placement)?;
        let resp = resp.error_for_status().map_err(placement)?;
        resp.json().await.map_err(placement)
    }
}

impl HttpPlacementAdmin {
    async fn send(&self, req: reqwest::RequestBuilder, url: String) -> Result<()> {
        let placement = |source| Error::Placement {
            url: url.clone(),
            source,
        };
        let resp = req.send().await.map_err(placement)?;
        resp.error_for_status().map_err(placement)?;
        Ok(())
    }
}

impl PlacementAdmin for HttpPlacementAdmin {
    fn view<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<PlacementView>> {
        Box::pin(async move {
            let members = self.get(endpoint, "/pd/api/v1/members").await?;
            let health = self.get(endpoint, "/pd/api/v1/health").await?;
            let stores = self.get(endpoint, "/pd/api/v1/stores").await?;
            let ft = self.get(endpoint, "/pd/api/v1/fault-tolerance").await.ok();
            let (members, leader) = parse_members(&members, &health);
            Ok(PlacementView {
                members,
                leader,
                stores: parse_stores(&stores),
                fault_tolerance: ft.as_ref().and_then(parse_fault_tolerance),
            })
        })
    }

    fn delete_store<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<()>> {
        let url = format!("{endpoint}/pd/api/v1/store/{id}");
        Box::pin(self.send(self.http.delete(url.clone()), url))
    }

    fn evict_leader<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<()>> {
        let url = format!("{endpoint}/pd/api/v1/schedulers");
        let body = serde_json::json!({"name": "evict-leader-scheduler", "store_id": id});
        Box::pin(self.send(self.http.post(url.clone()).json(&body), url))
    }

    fn remove_evict_leader<'a>(&'a self, endpoint: &'a str, id: u64) -> BoxFuture<'a, Result<()>> {
        let url = format!("{endpoint}/pd/api/v1/schedulers/evict-leader-scheduler-{id}");
        Box::pin(self.send(self.http.delete(url.clone()), url))
    }

    fn transfer_leader<'a>(
        &'a self,
        endpoint: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        let url = format!("{endpoint}/pd/api/v1/leader/transfer/{name}");
        Box::pin(self.send(self.http.post(url.clone()), url))
    }

    fn delete_member<'a>(&'a self, endpoint: &'a str, name: &'a str) -> BoxFuture<'a, Result<()>> {
        let url = format!("{endpoint}/pd/api/v1/members/name/{name}");
        Box::pin(self.send(self.http.delete(url.clone()), url))
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Members from `/members`, healthy when `/health` says so.
pub fn parse_members(members: &Value, health: &Value) -> (Vec<PlacementMember>, Option<String>) {
    let healthy: Vec<&str> = health
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["health"].as_bool() == Some(true))
        .filter_map(|h| h["name"].as_str())
        .collect();
    let list = members["members"].as_array().into_iter().flatten();
    let parsed = list
        .map(|m| {
            let name = m["name"].as_str().unwrap_or_default().to_owned();
            PlacementMember {
                health: healthy.contains(&name.as_str()),
                member_id: m["member_id"].as_u64().unwrap_or_default(),
                client_urls: strings(&m["client_urls"]),
                name,
            }
        })
        .collect();
    let leader = members["leader"]["name"].as_str().map(str::to_owned);
    (parsed, leader)
}

/// Stores from `/stores`: `{"stores": [{"store": {...}, "status": {...}}]}`.
pub fn parse_stores(stores: &Value) -> Vec<StoreInfo> {
    let list = stores["stores"].as_array().into_iter().flatten();
    list.map(|s| {
        let (store, status) = (&s["store"], &s["status"]);
        let labels: BTreeMap<String, String> = store["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| {
                Some((
                    l["key"].as_str()?.to_owned(),
                    l["value"].as_str()?.to_owned(),
                ))
            })
            .collect();
        StoreInfo {
            id: store["id"].as_u64().unwrap_or_default(),
            pod: None,
            address: store["address"].as_str().unwrap_or_default().to_owned(),
            state: store["state_name"].as_str().unwrap_or("Unknown").to_owned(),
            labels,
            leader_count: status["leader_count"].as_i64().unwrap_or_default(),
            region_count: status["region_count"].as_i64().unwrap_or_default(),
            last_heartbeat: status["last_heartbeat_ts"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map(Time),
        }
    })
    .collect()
}

/// Stores that may fail at once with every region keeping a majority: the `store` level.
pub fn parse_fault_tolerance(ft: &Value) -> Option<i32> {
    let levels = ft["levels"].as_array()?;
    let store = levels.iter().find(|l| l["level"] == "store")?;
    i32::try_from(store["tolerable_failures"].as_u64()?).ok()
}

/// Names each store after the pod that advertises its address
/// (`<pod>.<cluster>-store-peer.<ns>.svc:20160`); stores of other origins keep `pod: None`.
pub fn assign_pods(tc: &TikvCluster, stores: &mut [StoreInfo]) {
    let Ok(ns) = crate::builders::namespace(tc) else {
        return;
    };
    let suffix = format!(".{}.{ns}.svc", peer_service_name(tc, Component::Store));
    for s in stores {
        let host = s
            .address
            .rsplit_once(':')
            .map_or(s.address.as_str(), |(h, _)| h);
        s.pod = host.strip_suffix(&suffix).map(str::to_owned);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;
    use crate::builders::fixtures::cluster;
    use crate::crd::TikvClusterSpec;

    #[test]
    fn members_leader_and_health() {
        let members = json!({
            "members": [{"name": "basic-placement-0", "member_id": 42,
                         "client_urls": ["http://a:2379"]}],
            "leader": {"name": "basic-placement-0"}
        });
        let health = json!([{"name": "basic-placement-0", "health": true}]);
        let (m, leader) = parse_members(&members, &health);
        assert_eq!(leader.as_deref(), Some("basic-placement-0"));
        assert_eq!(m[0].client_urls, ["http://a:2379"]);
        assert_eq!(m[0].member_id, 42);
        assert!(m[0].health);
        let (m, _) = parse_members(&members, &json!([]));
        assert!(!m[0].health);
    }

    #[test]
    fn stores_with_labels_counts_and_pods() {
        let doc = json!({"count": 1, "stores": [{
            "store": {"id": 4, "address": "basic-store-1.basic-store-peer.db.svc:20160",
                      "state_name": "Up", "labels": [{"key": "zone", "value": "z1"}]},
            "status": {"leader_count": 7, "region_count": 21,
                       "last_heartbeat_ts": "2026-11-25T15:00:00Z"}
        }, {
            "store": {"id": 9, "address": "10.0.0.9:20160", "state_name": "Offline"},
            "status": {}
        }]});
        let mut stores = parse_stores(&doc);
        assign_pods(&cluster(TikvClusterSpec::default()), &mut stores);
        assert_eq!(stores[0].id, 4);
        assert_eq!(stores[0].pod.as_deref(), Some("basic-store-1"));
        assert_eq!(stores[0].labels["zone"], "z1");
        assert_eq!((stores[0].leader_count, stores[0].region_count), (7, 21));
        assert_eq!(
            stores[0].last_heartbeat.as_ref().map(|t| t.0.as_second()),
            Some(1_795_618_800)
        );
        assert_eq!(stores[1].last_heartbeat, None);
        assert_eq!(stores[1].state, "Offline");
        assert_eq!(stores[1].pod, None);
    }

    /// A local HTTP server standing in for placement's member endpoints: records each
    /// request's method and path; member `gone` answers 404 as PD does for an unknown name.
    async fn member_api() -> (String, Arc<Mutex<Vec<String>>>) {
        use axum::extract::{Path, State};
        use axum::http::{Method, StatusCode};
        use axum::routing::{delete, post};

        type Seen = Arc<Mutex<Vec<String>>>;
        async fn record(
            State(seen): State<Seen>,
            method: Method,
            Path(name): Path<String>,
        ) -> StatusCode {
            seen.lock().unwrap().push(format!("{method} {name}"));
            if name == "gone" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            }
        }
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .route("/pd/api/v1/leader/transfer/{name}", post(record))
            .route("/pd/api/v1/members/name/{name}", delete(record))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    #[tokio::test]
    async fn member_calls_use_pds_paths_and_report_errors() {
        let (endpoint, seen) = member_api().await;
        let client = HttpPlacementAdmin::default();
        client
            .transfer_leader(&endpoint, "basic-placement-0")
            .await
            .unwrap();
        client
            .delete_member(&endpoint, "basic-placement-2")
            .await
            .unwrap();
        let err = client.delete_member(&endpoint, "gone").await.unwrap_err();
        assert!(
            err.to_string().contains("/pd/api/v1/members/name/gone"),
            "{err}"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "POST basic-placement-0",
                "DELETE basic-placement-2",
                "DELETE gone"
            ]
        );
    }

    #[test]
    fn fault_tolerance_is_the_store_level() {
        let doc = json!({"regions": 3, "levels": [
            {"level": "zone", "domains": 1, "tolerable_failures": 0},
            {"level": "store", "domains": 3, "tolerable_failures": 1}
        ]});
        assert_eq!(parse_fault_tolerance(&doc), Some(1));
        assert_eq!(parse_fault_tolerance(&json!({})), None);
    }
}
