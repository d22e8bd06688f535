//! What a member that does not serve as leader answers ([`gate`], a middleware in front of
//! every route).
//!
//! Every member answers `GetMembers`, `GetClusterInfo`, etcd `MemberList`, `/health`,
//! `/metrics` and the member routes of the HTTP API, so clients and tools can find the
//! leader through any member, and etcd calls placement does not serve get `Unimplemented`
//! from any member. Other gRPC calls get `Unavailable` "not leader ...", as PD's
//! followers answer, and the clients reconnect to the leader. Other HTTP API calls are
//! forwarded to the leader (as PD's followers do), so a Service spreading requests over the
//! members works; a forwarded request that lands on a non-leader again is refused rather than
//! bounced around.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use crate::state::Placement;

/// Marks a request a member forwarded to the leader.
const FORWARDED: &str = "x-placement-forwarded";
/// Largest request body forwarded.
const MAX_FORWARD_BODY: usize = 4 << 20;

/// One HTTP client for every forwarded call, so connections to the leader are reused.
fn forwarding_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

enum Route {
    /// Answered by every member.
    Open,
    /// A gRPC call only the leader serves.
    Grpc,
    /// An HTTP API call only the leader serves.
    Http,
}

fn classify(path: &str) -> Route {
    match path {
        "/pdpb.PD/GetMembers"
        | "/pdpb.PD/GetClusterInfo"
        | "/etcdserverpb.Cluster/MemberList"
        | "/health"
        | "/metrics"
        | "/pd/api/v1/members"
        | "/pd/api/v1/leader"
        | "/pd/api/v1/version" => Route::Open,
        // The one etcd call served with leader's data; every other etcd call is answered
        // `Unimplemented` by any member, not `Unavailable`, which clients would retry.
        "/etcdserverpb.KV/Range" => Route::Grpc,
        p if p.starts_with("/etcdserverpb.") => Route::Open,
        p if p.starts_with("/pdpb.") || p.starts_with("/keyspacepb.") => Route::Grpc,
        p if p.starts_with("/pd/api/") => Route::Http,
        _ => Route::Open,
    }
}

/// The middleware.
pub async fn gate(State(state): State<Arc<Placement>>, req: Request, next: Next) -> Response {
    match classify(req.uri().path()) {
        Route::Open => next.run(req).await,
        _ if state.is_leader() => next.run(req).await,
        Route::Grpc => {
            tonic::Status::unavailable(state.member.not_leader().to_string()).into_http::<Body>()
        }
        Route::Http => forward(&state, req).await,
    }
}

fn refuse(code: StatusCode, msg: String) -> Response {
    (code, Json(Value::String(msg))).into_response()
}

async fn forward(state: &Placement, req: Request) -> Response {
    let leader = state
        .member
        .leader()
        .filter(|l| l.id != state.member_id && !req.headers().contains_key(FORWARDED));
    let Some(url) = leader.and_then(|l| l.client_urls.first().cloned()) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            state.member.not_leader().to_string(),
        );
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_FORWARD_BODY).await else {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large".into(),
        );
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let target = format!("{}{path}", url.trim_end_matches('/'));
    let mut request = forwarding_client()
        .request(parts.method.clone(), &target)
        .timeout(Duration::from_secs(30))
        .header(FORWARDED, "1")
        .body(body);
    if let Some(ct) = parts.headers.get("content-type") {
        request = request.header("content-type", ct.clone());
    }
    match request.send().await {
        Ok(resp) => {
            let status = resp.status();
            let content_type = resp.headers().get("content-type").cloned();
            let bytes = resp.bytes().await.unwrap_or_default();
            let mut out = Response::new(Body::from(bytes));
            *out.status_mut() = status;
            if let Some(ct) = content_type {
                out.headers_mut().insert("content-type", ct);
            }
            out.headers_mut().insert(
                "x-placement-leader",
                HeaderValue::from_str(&url).unwrap_or(HeaderValue::from_static("")),
            );
            out
        }
        Err(e) => refuse(
            StatusCode::BAD_GATEWAY,
            format!("forwarding to the placement leader at {url} failed: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// client-go's etcd client may send any etcd call to any member: one placement does not
    /// serve must be refused as unimplemented by followers too, never as "not leader".
    #[test]
    fn unserved_etcd_calls_are_unimplemented_on_every_member() {
        for path in [
            "/etcdserverpb.KV/Put",
            "/etcdserverpb.KV/Txn",
            "/etcdserverpb.Watch/Watch",
            "/etcdserverpb.Lease/LeaseGrant",
        ] {
            assert!(matches!(classify(path), Route::Open), "{path}");
        }
        assert!(matches!(classify("/etcdserverpb.KV/Range"), Route::Grpc));
    }

    #[test]
    fn routes_are_classified() {
        assert!(matches!(classify("/pdpb.PD/GetMembers"), Route::Open));
        assert!(matches!(classify("/pdpb.PD/Tso"), Route::Grpc));
        assert!(matches!(classify("/etcdserverpb.KV/Range"), Route::Grpc));
        assert!(matches!(
            classify("/etcdserverpb.Cluster/MemberList"),
            Route::Open
        ));
        assert!(matches!(
            classify("/keyspacepb.Keyspace/LoadKeyspace"),
            Route::Grpc
        ));
        assert!(matches!(classify("/pd/api/v1/stores"), Route::Http));
        assert!(matches!(classify("/pd/api/v1/members"), Route::Open));
        assert!(matches!(classify("/metrics"), Route::Open));
    }
}
