//! The store's client of the placement service (`pdpb.PD`).
//!
//! Placement runs as a raft group; only its leader serves requests other
//! than `GetMembers`. [`PlacementClient`] finds the leader by asking every member it
//! knows for `GetMembers` (the endpoints it was given plus the client URLs of
//! every member it has heard of) and talks to the first leader named that it
//! can reach. The connection lives behind a lock shared by all clones, so a
//! leader change seen by one caller is seen by all.
//!
//! Every call goes through one retry loop: a transport error, an
//! `Unavailable` status or a "not leader" answer makes it re-resolve the
//! leader (one resolution per failed connection generation, however many
//! callers saw the failure) and retry with a bounded backoff until the call's
//! deadline ([`CALL_DEADLINE`] unless the client was built with another).
//! Answers whose header carries an error are not retried.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use proto::metapb;
use proto::pdpb::pd_client::PdClient as GrpcPd;
use proto::pdpb::{self, RequestHeader, ResponseHeader};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use tonic::transport::Channel;

/// How long one call may spend across leader changes before it fails.
pub const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Bound on establishing a connection to one placement member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on asking one member for `GetMembers`, connection included.
const MEMBERS_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on one attempt of a call against the current leader.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before the first retry of a call; doubled per retry up to the max.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("placement unreachable at {endpoints}: {reason}")]
    Unreachable { endpoints: String, reason: String },
    #[error("placement rpc failed: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("placement returned {kind:?}: {message}")]
    Header {
        kind: pdpb::ErrorType,
        message: String,
    },
    /// Retries across leader changes ran out of time.
    #[error("placement call {call} gave up after {after:?} without a working leader: {last}")]
    GaveUp {
        call: &'static str,
        after: Duration,
        last: String,
    },
}

/// One connection to the leader; `generation` counts the leader changes seen.
struct Leader {
    generation: u64,
    url: String,
    client: GrpcPd<Channel>,
}

struct Shared {
    cluster_id: u64,
    call_deadline: Duration,
    /// Every endpoint given or learned, normalised, without duplicates.
    endpoints: Mutex<Vec<String>>,
    leader: Mutex<Arc<Leader>>,
    /// Held while resolving, so concurrent failures resolve once.
    resolving: tokio::sync::Mutex<String>,
    /// Resolutions tried so far (bumped under `resolving`).
    attempts: AtomicU64,
}

/// Client of the placement leader; clones share the connection.
#[derive(Clone)]
pub struct PlacementClient {
    shared: Arc<Shared>,
}

fn with_scheme(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.starts_with("http://") || url.starts_with("https://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

fn check(header: Option<ResponseHeader>) -> Result<(), PlacementError> {
    match header.and_then(|h| h.error) {
        Some(e) if e.r#type != pdpb::ErrorType::Ok as i32 => Err(PlacementError::Header {
            kind: pdpb::ErrorType::try_from(e.r#type).unwrap_or(pdpb::ErrorType::Unknown),
            message: e.message,
        }),
        _ => Ok(()),
    }
}

/// Whether a failed attempt may succeed against a (re-resolved) leader.
fn retryable(status: &tonic::Status) -> bool {
    use tonic::Code;
    status.message().starts_with("not leader")
        || status.message().starts_with("h2 protocol error")
        || matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
        )
}

async fn channel(url: &str) -> Result<Channel, String> {
    let endpoint = Channel::from_shared(with_scheme(url))
        .map_err(|e| format!("bad placement url {url:?}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // A leader that vanishes without closing its sockets is noticed.
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true);
    // `connect_timeout` covers the TCP connect only; a listener that accepts
    // but never speaks HTTP/2 must not hold the caller either.
    match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
        Ok(r) => r.map_err(|e| format!("{url}: {e}")),
        Err(_) => Err(format!("{url}: connection timed out")),
    }
}

/// The outcome of one round of `GetMembers` over the known endpoints.
struct Resolved {
    cluster_id: u64,
    url: String,
    client: GrpcPd<Channel>,
}

/// One member's answer to `GetMembers`, with the connection that got it.
type MembersAnswer = Result<(GrpcPd<Channel>, pdpb::GetMembersResponse), String>;

async fn ask_members(ep: String) -> (String, MembersAnswer) {
    let ask = async {
        let mut client = GrpcPd::new(channel(&ep).await?);
        let resp = client
            .get_members(pdpb::GetMembersRequest::default())
            .await
            .map_err(|e| format!("{ep}: {}", e.message()))?;
        Ok((client, resp.into_inner()))
    };
    let res = match tokio::time::timeout(MEMBERS_TIMEOUT, ask).await {
        Ok(r) => r,
        Err(_) => Err(format!("{ep}: GetMembers timed out")),
    };
    (ep, res)
}

/// Asks every endpoint for the members at once and connects to the first
/// leader named that answers; the client URLs of all members heard of are
/// added to `learned`. `cluster_id`, once known, rejects foreign clusters.
async fn resolve(
    endpoints: &[String],
    cluster_id: Option<u64>,
    learned: &mut Vec<String>,
) -> Result<Resolved, String> {
    let mut asks: FuturesUnordered<_> = endpoints.iter().cloned().map(ask_members).collect();
    let mut errors = Vec::new();
    while let Some((ep, res)) = asks.next().await {
        let (client, resp) = match res {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let cid = resp.header.as_ref().map(|h| h.cluster_id).unwrap_or(0);
        if cluster_id.is_some_and(|want| want != cid) {
            errors.push(format!("{ep}: serves cluster {cid}, not {cluster_id:?}"));
            continue;
        }
        for m in &resp.members {
            learned.extend(m.client_urls.iter().map(|u| with_scheme(u)));
        }
        let Some(url) = resp
            .leader
            .and_then(|l| l.client_urls.into_iter().next())
            .map(|u| with_scheme(&u))
        else {
            errors.push(format!("{ep}: names no leader"));
            continue;
        };
        let client = if url == ep {
            client
        } else {
            match channel(&url).await {
                Ok(ch) => GrpcPd::new(ch),
                Err(e) => {
                    errors.push(format!("{ep} names leader {url}, unreachable: {e}"));
                    continue;
                }
            }
        };
        return Ok(Resolved {
            cluster_id: cid,
            url,
            client,
        });
    }
    if errors.is_empty() {
        errors.push("no endpoints".into());
    }
    Err(errors.join("; "))
}

fn merge(into: &mut Vec<String>, more: impl IntoIterator<Item = String>) {
    for url in more {
        if !into.contains(&url) {
            into.push(url);
        }
    }
}

impl PlacementClient {
    /// Connects to the placement leader, retrying until `timeout` passes;
    /// later calls retry across leader changes for up to [`CALL_DEADLINE`].
    pub async fn connect(
        endpoints: &[String],
        timeout: Duration,
    ) -> Result<PlacementClient, PlacementError> {
        Self::connect_with_deadline(endpoints, timeout, CALL_DEADLINE).await
    }

    /// [`PlacementClient::connect`] with another per-call deadline.
    pub async fn connect_with_deadline(
        endpoints: &[String],
        timeout: Duration,
        call_deadline: Duration,
    ) -> Result<PlacementClient, PlacementError> {
        let mut known = Vec::new();
        merge(&mut known, endpoints.iter().map(|e| with_scheme(e)));
        let deadline = Instant::now() + timeout;
        let mut reason = String::from("timed out finding the leader");
        loop {
            let mut learned = Vec::new();
            let res = timeout_at(deadline, resolve(&known, None, &mut learned)).await;
            merge(&mut known, learned);
            match res {
                Ok(Ok(r)) => {
                    tracing::info!(leader = %r.url, cluster_id = r.cluster_id, "connected to placement");
                    let leader = Leader {
                        generation: 0,
                        url: r.url,
                        client: r.client,
                    };
                    return Ok(PlacementClient {
                        shared: Arc::new(Shared {
                            cluster_id: r.cluster_id,
                            call_deadline,
                            endpoints: Mutex::new(known),
                            leader: Mutex::new(Arc::new(leader)),
                            resolving: tokio::sync::Mutex::new(String::new()),
                            attempts: AtomicU64::new(0),
                        }),
                    });
                }
                Ok(Err(e)) => reason = e,
                // Keep what the last completed round said.
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return Err(PlacementError::Unreachable {
                    endpoints: known.join(","),
                    reason,
                });
            }
            tracing::info!(error = %reason, "waiting for placement");
            tokio::time::sleep_until((Instant::now() + Duration::from_millis(500)).min(deadline))
                .await;
        }
    }

    pub fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    /// Every placement endpoint known: those given and those learned.
    pub fn endpoints(&self) -> Vec<String> {
        self.shared.endpoints.lock().clone()
    }

    /// The client URL of the leader currently talked to.
    pub fn leader_url(&self) -> String {
        self.shared.leader.lock().url.clone()
    }

    /// Counts leader re-resolutions; a stream opened under an older
    /// generation may be talking to a member that is no longer leader.
    pub fn leader_generation(&self) -> u64 {
        self.shared.leader.lock().generation
    }

    fn leader(&self) -> Arc<Leader> {
        self.shared.leader.lock().clone()
    }

    fn header(&self) -> Option<RequestHeader> {
        Some(RequestHeader {
            cluster_id: self.shared.cluster_id,
            ..Default::default()
        })
    }

    pub fn request_header(&self) -> Option<RequestHeader> {
        self.header()
    }

    /// Replaces the leader connection of generation `failed`, unless another
    /// caller already did, or already tried while this one waited (then its
    /// error is returned, and the caller backs off before trying again).
    async fn refresh_leader(&self, failed: u64, deadline: Instant) -> Result<(), String> {
        let seen = self.shared.attempts.load(Ordering::Acquire);
        let Ok(mut last_error) = timeout_at(deadline, self.shared.resolving.lock()).await else {
            return Err("timed out waiting for another caller to find the leader".into());
        };
        if self.leader_generation() != failed {
            return Ok(());
        }
        if self.shared.attempts.load(Ordering::Acquire) != seen {
            return Err(last_error.clone());
        }
        self.shared.attempts.fetch_add(1, Ordering::AcqRel);
        let known = self.endpoints();
        let mut learned = Vec::new();
        let res = timeout_at(
            deadline,
            resolve(&known, Some(self.shared.cluster_id), &mut learned),
        )
        .await;
        merge(&mut self.shared.endpoints.lock(), learned);
        match res {
            Ok(Ok(r)) => {
                tracing::info!(leader = %r.url, generation = failed + 1, "placement leader changed");
                *self.shared.leader.lock() = Arc::new(Leader {
                    generation: failed + 1,
                    url: r.url,
                    client: r.client,
                });
                Ok(())
            }
            Ok(Err(e)) => {
                *last_error = e.clone();
                Err(e)
            }
            Err(_) => Err(format!(
                "timed out finding the leader (before: {})",
                last_error.as_str()
            )),
        }
    }

    /// Runs `attempt` against the leader until it succeeds, fails for good,
    /// or the call deadline passes; see the module docs.
    async fn call<T, F, Fut>(&self, name: &'static str, mut attempt: F) -> Result<T, PlacementError>
    where
        F: FnMut(GrpcPd<Channel>) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let started = Instant::now();
        let deadline = started + self.shared.call_deadline;
        let mut backoff = BACKOFF_MIN;
        let mut search_error = None;
        loop {
            let leader = self.leader();
            let attempt_end = deadline.min(Instant::now() + ATTEMPT_TIMEOUT);
            let last = match timeout_at(attempt_end, attempt(leader.client.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(s)) if !retryable(&s) => return Err(PlacementError::Rpc(s)),
                Ok(Err(s)) => format!("{}: {:?}: {}", leader.url, s.code(), s.message()),
                Err(_) => format!("{}: no answer in time", leader.url),
            };
            tracing::debug!(call = name, error = %last, "placement call failed; finding the leader");
            if Instant::now() < deadline {
                match self.refresh_leader(leader.generation, deadline).await {
                    Ok(()) => search_error = None,
                    Err(e) => search_error = Some(e),
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let last = match search_error {
                    Some(e) => format!("{last}; finding the leader: {e}"),
                    None => last,
                };
                return Err(PlacementError::GaveUp {
                    call: name,
                    after: now - started,
                    last,
                });
            }
            tokio::time::sleep_until((now + backoff).min(deadline)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    pub async fn alloc_id(&self) -> Result<u64, PlacementError> {
        let header = self.header();
        let resp = self
            .call("alloc_id", |mut c| {
                let req = pdpb::AllocIdRequest {
                    header: header.clone(),
                };
                async move { c.alloc_id(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        check(resp.header)?;
        Ok(resp.id)
    }

    pub async fn is_bootstrapped(&self) -> Result<bool, PlacementError> {
        let header = self.header();
        let resp = self
            .call("is_bootstrapped", |mut c| {
                let req = pdpb::IsBootstrappedRequest {
                    header: header.clone(),
                };
                async move { c.is_bootstrapped(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        check(resp.header)?;
        Ok(resp.bootstrapped)
    }

    /// Bootstraps the cluster. A retry after a lost answer may report
    /// `AlreadyBootstrapped` for this very request; see [`PlacementClient::get_region`].
    pub async fn bootstrap(
        &self,
        store: metapb::Store,
        region: metapb::Region,
    ) -> Result<(), PlacementError> {
        let req = pdpb::BootstrapRequest {
            header: self.header(),
            store: Some(store),
            region: Some(region),
        };
        let resp = self
            .call("bootstrap", |mut c| {
                let req = req.clone();
                async move { c.bootstrap(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        check(resp.header)
    }

    /// The region placement holds for `key` (`None` if it knows none).
    pub async fn get_region(&self, key: &[u8]) -> Result<Option<metapb::Region>, PlacementError> {
        Ok(self.region_by_key(key).await?.region)
    }

    /// The leader placement knows for the region holding `key` (`None` if
    /// it knows no region or no leader there).
    pub async fn get_region_leader(
        &self,
        key: &[u8],
    ) -> Result<Option<metapb::Peer>, PlacementError> {
        Ok(self.region_by_key(key).await?.leader)
    }

    async fn region_by_key(&self, key: &[u8]) -> Result<pdpb::GetRegionResponse, PlacementError> {
        let req = pdpb::GetRegionRequest {
            header: self.header(),
            region_key: key.to_vec(),
            ..Default::default()
        };
        let resp = self
            .call("get_region", |mut c| {
                let req = req.clone();
                async move { c.get_region(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        check(resp.header.clone())?;
        Ok(resp)
    }

    pub async fn get_store(&self, store_id: u64) -> Result<metapb::Store, PlacementError> {
        let header = self.header();
        let resp = self
            .call("get_store", |mut c| {
                let req = pdpb::GetStoreRequest {
                    header: header.clone(),
                    store_id,
                };
                async move { c.get_store(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        check(resp.header)?;
        resp.store.ok_or(PlacementError::Header {
            kind: pdpb::ErrorType::Unknown,
            message: format!("store {store_id} not found"),
        })
    }

    pub async fn put_store(&self, store: metapb::Store) -> Result<(), PlacementError> {
        let req = pdpb::PutStoreRequest {
            header: self.header(),
            store: Some(store),
        };
        let resp = self
            .call("put_store", |mut c| {
                let req = req.clone();
                async move { c.put_store(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        check(resp.header)
    }

    pub async fn store_heartbeat(&self, stats: pdpb::StoreStats) -> Result<(), PlacementError> {
        let req = pdpb::StoreHeartbeatRequest {
            header: self.header(),
            stats: Some(stats),
        };
        let resp = self
            .call("store_heartbeat", |mut c| {
                let req = req.clone();
                async move { c.store_heartbeat(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        check(resp.header)
    }

    /// Opens the region heartbeat stream on the current leader: send
    /// requests into the returned sender; placement's answers (operators)
    /// come out of the receiver, which ends when the stream does (the leader
    /// stepped down or died). The caller then opens a new one.
    pub async fn region_heartbeat_stream(
        &self,
    ) -> Result<
        (
            mpsc::Sender<pdpb::RegionHeartbeatRequest>,
            mpsc::Receiver<pdpb::RegionHeartbeatResponse>,
        ),
        PlacementError,
    > {
        let (tx, mut responses) = self
            .call("region_heartbeat", |mut c| async move {
                let (tx, rx) = mpsc::channel(256);
                let resp = c
                    .region_heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await?;
                Ok((tx, resp.into_inner()))
            })
            .await?;
        let (resp_tx, resp_rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let resp = match responses.message().await {
                    Ok(Some(resp)) => resp,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(error = %e, "region heartbeat stream ended");
                        break;
                    }
                };
                if let Err(e) = check(resp.header.clone()) {
                    tracing::warn!(error = %e, region_id = resp.region_id, "region heartbeat rejected");
                    continue;
                }
                if resp_tx.send(resp).await.is_err() {
                    break;
                }
            }
        });
        Ok((tx, resp_rx))
    }

    /// New region and peer ids for splitting `region` `count` times.
    pub async fn ask_batch_split(
        &self,
        region: metapb::Region,
        count: usize,
    ) -> Result<Vec<pdpb::SplitId>, PlacementError> {
        let req = pdpb::AskBatchSplitRequest {
            header: self.header(),
            region: Some(region),
            split_count: count as u32,
        };
        let resp = self
            .call("ask_batch_split", |mut c| {
                let req = req.clone();
                async move { c.ask_batch_split(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        check(resp.header)?;
        Ok(resp.ids)
    }

    pub async fn report_batch_split(
        &self,
        regions: Vec<metapb::Region>,
    ) -> Result<(), PlacementError> {
        let req = pdpb::ReportBatchSplitRequest {
            header: self.header(),
            regions,
        };
        let resp = self
            .call("report_batch_split", |mut c| {
                let req = req.clone();
                async move { c.report_batch_split(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        check(resp.header)
    }

    /// One fresh timestamp (`physical << 18 | logical`) from the oracle.
    pub async fn get_ts(&self) -> Result<u64, PlacementError> {
        let req = pdpb::TsoRequest {
            header: self.header(),
            count: 1,
            ..Default::default()
        };
        let resp = self
            .call("get_ts", |mut c| {
                let req = req.clone();
                async move {
                    let mut stream = c.tso(tokio_stream::iter(vec![req])).await?.into_inner();
                    stream
                        .message()
                        .await?
                        .ok_or_else(|| tonic::Status::unavailable("tso stream closed"))
                }
            })
            .await?;
        check(resp.header)?;
        let ts = resp.timestamp.unwrap_or_default();
        Ok(((ts.physical as u64) << 18) | ts.logical as u64)
    }
}

impl crate::storage::TsoSource for PlacementClient {
    fn get_ts(&self) -> futures::future::BoxFuture<'_, Result<u64, crate::storage::TsoError>> {
        Box::pin(async move { Ok(PlacementClient::get_ts(self).await?) })
    }
}
