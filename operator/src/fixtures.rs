//! `MockApiServer`: a scripted stand-in for the Kubernetes API server, for reconcile tests
//! (the controller-rs `fixtures.rs` pattern over `tower_test::mock`). It is a mock, not a
//! fake cluster: it stores nothing and only answers the calls one reconcile pass makes.
//!
//! GETs (single objects and lists) are answered from the objects a test seeds (404 otherwise);
//! server-side applies echo the applied object, keeping the seeded object's `status`; status
//! patches echo the cluster with the new status, metadata patches of the cluster echo it with
//! the new finalizers; DELETEs succeed for seeded paths and answer 404 otherwise. Every request
//! is recorded for the test to assert on.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::crd::TikvCluster;
use crate::placement::{PlacementAdmin, PlacementView};
use crate::Error;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One call the operator made: method, path, query string and JSON body.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl Call {
    /// `"PATCH statefulsets/basic-store"`: verb and the last two path segments.
    pub fn short(&self) -> String {
        let mut parts = self.path.rsplit('/');
        let (last, prev) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        format!("{} {prev}/{last}", self.method)
    }
}

pub struct MockApiServer {
    handle: Handle,
    cluster: Value,
    seeded: BTreeMap<String, Value>,
}

impl MockApiServer {
    /// A client wired to a new mock that serves `cluster` (as the API server would hand it over).
    pub fn new(cluster: &TikvCluster) -> (Client, MockApiServer) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = MockApiServer {
            handle,
            cluster: serde_json::to_value(cluster).unwrap(),
            seeded: BTreeMap::new(),
        };
        (Client::new(service, "default"), server)
    }

    /// Makes `obj` exist at `path` (e.g. `/apis/apps/v1/namespaces/db/statefulsets/basic-store`).
    pub fn seed(mut self, path: &str, obj: Value) -> Self {
        self.seeded.insert(path.to_owned(), obj);
        self
    }

    /// Serves until the client is dropped; returns the calls in order. Panics after 10s, so a
    /// reconcile waiting on a request nobody answers fails instead of hanging.
    pub fn run(mut self) -> tokio::task::JoinHandle<Vec<Call>> {
        tokio::spawn(async move {
            let mut calls = Vec::new();
            let serve = async {
                while let Some((req, send)) = self.handle.next_request().await {
                    let call = must_call(req).await;
                    let (code, body) = self.answer(&call);
                    calls.push(call);
                    let resp = Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap();
                    send.send_response(resp);
                }
            };
            tokio::time::timeout(Duration::from_secs(10), serve)
                .await
                .expect("MockApiServer: reconcile did not finish within 10s");
            calls
        })
    }

    fn answer(&self, call: &Call) -> (StatusCode, Value) {
        let seeded = self.seeded.get(&call.path);
        match (&call.method, seeded) {
            (&Method::GET, Some(obj)) => (StatusCode::OK, obj.clone()),
            (&Method::GET, None) => (StatusCode::NOT_FOUND, not_found(&call.path)),
            (&Method::PATCH, _) if call.path.ends_with("/status") => {
                // A merge patch: fields set to null are removed, as the API server does.
                let mut tc = self.cluster.clone();
                tc["status"] = without_nulls(call.body["status"].clone());
                (StatusCode::OK, tc)
            }
            (&Method::POST, _) if call.path.ends_with("/events") => {
                (StatusCode::CREATED, call.body.clone())
            }
            (&Method::PATCH, _) if call.path.contains("/tikvclusters/") => {
                let mut tc = self.cluster.clone();
                tc["metadata"]["finalizers"] = call.body["metadata"]["finalizers"].clone();
                (StatusCode::OK, tc)
            }
            (&Method::DELETE, Some(_)) => (
                StatusCode::OK,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                       "status": "Success", "code": 200}),
            ),
            (&Method::DELETE, None) => (StatusCode::NOT_FOUND, not_found(&call.path)),
            (&Method::PATCH, seeded) => {
                let mut obj = call.body.clone();
                if let Some(status) = seeded.and_then(|s| s.get("status")) {
                    obj["status"] = status.clone();
                }
                (StatusCode::OK, obj)
            }
            _ => panic!("MockApiServer: unexpected call {}", call.short()),
        }
    }
}

async fn must_call(req: Request<Body>) -> Call {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Call {
        method,
        path,
        query,
        body,
    }
}

/// `v` with every null object field removed: what a merge patch leaves on an empty object.
pub fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

fn not_found(path: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{path} not found"), "reason": "NotFound", "code": 404
    })
}

/// A [`PlacementAdmin`] answering from a script: one fixed view, or "not answering". Records
/// the endpoints it was asked.
pub struct ScriptedPlacement {
    view: Option<PlacementView>,
    pub asked: Arc<Mutex<Vec<String>>>,
    /// Store ids the operator asked placement to drain.
    pub drained: Arc<Mutex<Vec<u64>>>,
    /// Evict-leader changes asked: `+id` added, `-id` removed.
    pub evictions: Arc<Mutex<Vec<String>>>,
    /// Member changes asked: `transfer:<name>` (leadership to), `delete:<name>`.
    pub member_ops: Arc<Mutex<Vec<String>>>,
}

impl ScriptedPlacement {
    pub fn up(view: PlacementView) -> Self {
        ScriptedPlacement {
            view: Some(view),
            asked: Arc::default(),
            drained: Arc::default(),
            evictions: Arc::default(),
            member_ops: Arc::default(),
        }
    }

    pub fn down() -> Self {
        ScriptedPlacement {
            view: None,
            asked: Arc::default(),
            drained: Arc::default(),
            evictions: Arc::default(),
            member_ops: Arc::default(),
        }
    }
}

impl PlacementAdmin for ScriptedPlacement {
    fn view<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, crate::Result<PlacementView>> {
        self.asked.lock().unwrap().push(endpoint.to_owned());
        let answer = self
            .view
            .clone()
            .ok_or_else(|| Error::PlacementUnavailable {
                url: endpoint.to_owned(),
                reason: "scripted: not answering".into(),
            });
        Box::pin(async move { answer })
    }

    fn delete_store<'a>(&'a self, _endpoint: &'a str, id: u64) -> BoxFuture<'a, crate::Result<()>> {
        self.drained.lock().unwrap().push(id);
        Box::pin(async { Ok(()) })
    }

    fn evict_leader<'a>(&'a self, _endpoint: &'a str, id: u64) -> BoxFuture<'a, crate::Result<()>> {
        self.evictions.lock().unwrap().push(format!("+{id}"));
        Box::pin(async { Ok(()) })
    }

    fn remove_evict_leader<'a>(
        &'a self,
        _endpoint: &'a str,
        id: u64,
    ) -> BoxFuture<'a, crate::Result<()>> {
        self.evictions.lock().unwrap().push(format!("-{id}"));
        Box::pin(async { Ok(()) })
    }

    fn transfer_leader<'a>(
        &'a self,
        _endpoint: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, crate::Result<()>> {
        self.member_ops
            .lock()
            .unwrap()
            .push(format!("transfer:{name}"));
        Box::pin(async { Ok(()) })
    }

    fn delete_member<'a>(
        &'a self,
        _endpoint: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, crate::Result<()>> {
        self.member_ops
            .lock()
            .unwrap()
            .push(format!("delete:{name}"));
        Box::pin(async { Ok(()) })
    }
}
