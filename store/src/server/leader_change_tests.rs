//! The placement client and the heartbeat task across placement leader
//! changes, against scripted `pdpb.PD` members.
//!
//! [`FakeGroup`] is a mock of the placement raft group: real tonic servers on
//! loopback that share one notion of who leads (set by the test) and follow
//! the members' contract — every member answers `GetMembers` naming the
//! leader (`Unavailable` while there is none), non-leaders answer everything
//! else with `Unavailable "not leader"`, and streams end when their member
//! loses leadership or stops. Each answer tells which member gave it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use proto::metapb;
use proto::pdpb::pd_server::{Pd, PdServer};
use proto::pdpb::*;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::heartbeat::{Heartbeat, HeartbeatConfig};
use super::pd::{PdClient, PdError};
use crate::engine::Engine;
use crate::raftstore::split_check::SplitLimits;
use crate::raftstore::{RegionMeta, Router, StoreMeta, StoreMsg};

const CLUSTER_ID: u64 = 7;
/// Bound on every wait for a condition in these tests.
const WAIT: Duration = Duration::from_secs(20);

/// What the members saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Members(usize),
    Served(usize, &'static str),
    Refused(usize, &'static str),
    Stalled(usize, &'static str),
    Heartbeat(usize, u64),
}

struct FakeMember {
    idx: usize,
    urls: Vec<String>,
    leader: watch::Receiver<Option<usize>>,
    alive: watch::Sender<bool>,
    /// While set, requests hang until the member is stopped.
    stall: AtomicBool,
    /// While set, a bootstrap is applied but its answer never sent (the
    /// request hangs until the member is stopped).
    lose_bootstrap_answer: AtomicBool,
    /// The region the group was bootstrapped with, shared by all members.
    bootstrapped: Arc<Mutex<Option<metapb::Region>>>,
    next_id: AtomicU64,
    events: Arc<Mutex<Vec<Event>>>,
}

fn header() -> Option<ResponseHeader> {
    Some(ResponseHeader {
        cluster_id: CLUSTER_ID,
        ..Default::default()
    })
}

/// Ids and timestamps member `idx` hands out start at this base.
fn base(idx: usize) -> u64 {
    (idx as u64 + 1) * 1000
}

impl FakeMember {
    fn log(&self, e: Event) {
        self.events.lock().push(e);
    }

    fn leads(&self) -> bool {
        *self.leader.borrow() == Some(self.idx)
    }

    /// Admits a request only on the live leader.
    async fn gate(&self, method: &'static str) -> Result<(), Status> {
        if self.stall.load(Ordering::SeqCst) {
            self.log(Event::Stalled(self.idx, method));
            let mut alive = self.alive.subscribe();
            let _ = alive.wait_for(|a| !*a).await.map(|_| ());
            return Err(Status::unavailable("connection reset: member stopped"));
        }
        if !self.leads() {
            self.log(Event::Refused(self.idx, method));
            return Err(Status::unavailable(format!(
                "not leader: member {} does not lead",
                self.idx
            )));
        }
        self.log(Event::Served(self.idx, method));
        Ok(())
    }

    /// Resolves once this member no longer leads or has stopped.
    async fn lost(&self) {
        let mut leader = self.leader.clone();
        let mut alive = self.alive.subscribe();
        let idx = self.idx;
        tokio::select! {
            _ = async { leader.wait_for(|l| *l != Some(idx)).await.map(|_| ()) } => {}
            _ = async { alive.wait_for(|a| !*a).await.map(|_| ()) } => {}
        }
    }
}

#[derive(Clone)]
struct FakePd(Arc<FakeMember>);

#[tonic::async_trait]
impl Pd for FakePd {
    async fn is_bootstrapped(
        &self,
        _request: Request<IsBootstrappedRequest>,
    ) -> Result<Response<IsBootstrappedResponse>, Status> {
        self.0.gate("is_bootstrapped").await?;
        Ok(Response::new(IsBootstrappedResponse {
            header: header(),
            bootstrapped: self.0.bootstrapped.lock().is_some(),
        }))
    }

    async fn bootstrap(
        &self,
        request: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        let m = &self.0;
        m.gate("bootstrap").await?;
        let region = request.into_inner().region.unwrap_or_default();
        {
            let mut done = m.bootstrapped.lock();
            if done.is_some() {
                return Ok(Response::new(BootstrapResponse {
                    header: Some(ResponseHeader {
                        cluster_id: CLUSTER_ID,
                        error: Some(Error {
                            r#type: ErrorType::AlreadyBootstrapped as i32,
                            message: "cluster is already bootstrapped".into(),
                        }),
                    }),
                }));
            }
            *done = Some(region);
        }
        if m.lose_bootstrap_answer.load(Ordering::SeqCst) {
            m.log(Event::Stalled(m.idx, "bootstrap"));
            let mut alive = m.alive.subscribe();
            let _ = alive.wait_for(|a| !*a).await.map(|_| ());
            return Err(Status::unavailable("connection reset: member stopped"));
        }
        Ok(Response::new(BootstrapResponse { header: header() }))
    }

    async fn get_region(
        &self,
        _request: Request<GetRegionRequest>,
    ) -> Result<Response<GetRegionResponse>, Status> {
        self.0.gate("get_region").await?;
        Ok(Response::new(GetRegionResponse {
            header: header(),
            region: self.0.bootstrapped.lock().clone(),
            ..Default::default()
        }))
    }

    async fn put_store(
        &self,
        _request: Request<PutStoreRequest>,
    ) -> Result<Response<PutStoreResponse>, Status> {
        self.0.gate("put_store").await?;
        Ok(Response::new(PutStoreResponse { header: header() }))
    }

    async fn get_members(
        &self,
        _request: Request<GetMembersRequest>,
    ) -> Result<Response<GetMembersResponse>, Status> {
        let m = &self.0;
        m.log(Event::Members(m.idx));
        let Some(leader) = *m.leader.borrow() else {
            return Err(Status::unavailable("no placement leader yet"));
        };
        let members: Vec<_> = m
            .urls
            .iter()
            .enumerate()
            .map(|(i, url)| Member {
                name: format!("placement-{i}"),
                member_id: i as u64 + 1,
                client_urls: vec![url.clone()],
                ..Default::default()
            })
            .collect();
        Ok(Response::new(GetMembersResponse {
            header: header(),
            leader: Some(members[leader].clone()),
            members,
            ..Default::default()
        }))
    }

    async fn alloc_id(
        &self,
        _request: Request<AllocIdRequest>,
    ) -> Result<Response<AllocIdResponse>, Status> {
        self.0.gate("alloc_id").await?;
        let id = base(self.0.idx) + self.0.next_id.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(AllocIdResponse {
            header: header(),
            id,
        }))
    }

    async fn store_heartbeat(
        &self,
        _request: Request<StoreHeartbeatRequest>,
    ) -> Result<Response<StoreHeartbeatResponse>, Status> {
        self.0.gate("store_heartbeat").await?;
        Ok(Response::new(StoreHeartbeatResponse {
            header: header(),
            ..Default::default()
        }))
    }

    async fn tso(
        &self,
        request: Request<Streaming<TsoRequest>>,
    ) -> Result<Response<BoxStream<TsoResponse>>, Status> {
        self.0.gate("tso").await?;
        let m = self.0.clone();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let next = tokio::select! {
                    r = inbound.message() => r,
                    () = m.lost() => {
                        let _ = tx.send(Err(Status::unavailable("not leader"))).await;
                        break;
                    }
                };
                let Ok(Some(req)) = next else { break };
                n += 1;
                let resp = TsoResponse {
                    header: header(),
                    count: req.count,
                    timestamp: Some(Timestamp {
                        physical: (base(m.idx) + n) as i64,
                        logical: 0,
                        suffix_bits: 0,
                    }),
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn region_heartbeat(
        &self,
        request: Request<Streaming<RegionHeartbeatRequest>>,
    ) -> Result<Response<BoxStream<RegionHeartbeatResponse>>, Status> {
        self.0.gate("region_heartbeat").await?;
        let m = self.0.clone();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    r = inbound.message() => r,
                    () = m.lost() => {
                        let _ = tx.send(Err(Status::unavailable("not leader"))).await;
                        break;
                    }
                };
                let Ok(Some(req)) = next else { break };
                let region_id = req.region.as_ref().map(|r| r.id).unwrap_or(0);
                m.log(Event::Heartbeat(m.idx, region_id));
                // An operator that names the member which sent it.
                let resp = RegionHeartbeatResponse {
                    header: header(),
                    region_id,
                    transfer_leader: Some(TransferLeader {
                        peer: Some(metapb::Peer {
                            id: base(m.idx),
                            store_id: 1,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A mock placement group of real servers; see the module docs.
struct FakeGroup {
    members: Vec<Arc<FakeMember>>,
    urls: Vec<String>,
    leader: watch::Sender<Option<usize>>,
    stops: Mutex<Vec<Option<oneshot::Sender<()>>>>,
    events: Arc<Mutex<Vec<Event>>>,
}

impl FakeGroup {
    async fn start(n: usize, leader: Option<usize>) -> FakeGroup {
        let mut listeners = Vec::new();
        let mut urls = Vec::new();
        for _ in 0..n {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            urls.push(format!("http://{}", l.local_addr().unwrap()));
            listeners.push(l);
        }
        let (leader_tx, _) = watch::channel(leader);
        let events = Arc::new(Mutex::new(Vec::new()));
        let bootstrapped = Arc::new(Mutex::new(None));
        let mut members = Vec::new();
        let mut stops = Vec::new();
        for (idx, listener) in listeners.into_iter().enumerate() {
            let member = Arc::new(FakeMember {
                idx,
                urls: urls.clone(),
                leader: leader_tx.subscribe(),
                alive: watch::channel(true).0,
                stall: AtomicBool::new(false),
                lose_bootstrap_answer: AtomicBool::new(false),
                bootstrapped: bootstrapped.clone(),
                next_id: AtomicU64::new(0),
                events: events.clone(),
            });
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let server = tonic::transport::Server::builder()
                .add_service(PdServer::new(FakePd(member.clone())))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stop_rx.await;
                });
            tokio::spawn(server);
            members.push(member);
            stops.push(Some(stop_tx));
        }
        FakeGroup {
            members,
            urls,
            leader: leader_tx,
            stops: Mutex::new(stops),
            events,
        }
    }

    fn set_leader(&self, leader: Option<usize>) {
        self.leader.send_replace(leader);
    }

    /// Stops member `idx`: its hanging requests fail, its streams end and it
    /// accepts no new connections.
    fn kill(&self, idx: usize) {
        self.members[idx].alive.send_replace(false);
        if let Some(stop) = self.stops.lock()[idx].take() {
            let _ = stop.send(());
        }
    }

    fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.events.lock().iter().filter(|e| pred(e)).count()
    }

    fn saw(&self, e: &Event) -> bool {
        self.events.lock().contains(e)
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after [`WAIT`].
async fn must_wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn must_connect(endpoints: &[String], call_deadline: Duration) -> PdClient {
    PdClient::connect_with_deadline(endpoints, Duration::from_secs(10), call_deadline)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_follower_endpoint_leads_the_client_to_the_leader() {
    let group = FakeGroup::start(3, Some(1)).await;
    let pd = must_connect(&group.urls[..1], Duration::from_secs(10)).await;
    assert_eq!(pd.cluster_id(), CLUSTER_ID);
    assert_eq!(pd.leader_url(), group.urls[1]);
    let id = pd.alloc_id().await.unwrap();
    assert_eq!(id, base(1), "the id comes from the leader");
    assert!(group.saw(&Event::Served(1, "alloc_id")));
    assert!(!group.saw(&Event::Refused(0, "alloc_id")));
    let known = pd.endpoints();
    for url in &group.urls {
        assert!(
            known.contains(url),
            "{url} learned from GetMembers: {known:?}"
        );
    }
}

#[tokio::test]
async fn calls_in_flight_on_a_dead_leader_finish_on_the_new_one() {
    let group = FakeGroup::start(3, Some(1)).await;
    let pd = must_connect(&group.urls[..1], Duration::from_secs(10)).await;
    group.members[1].stall.store(true, Ordering::SeqCst);
    let mut allocs = Vec::new();
    for _ in 0..4 {
        let pd = pd.clone();
        allocs.push(tokio::spawn(async move { pd.alloc_id().await }));
    }
    let ts = tokio::spawn({
        let pd = pd.clone();
        async move { pd.get_ts().await }
    });
    let store_hb = tokio::spawn({
        let pd = pd.clone();
        async move { pd.store_heartbeat(StoreStats::default()).await }
    });
    must_wait("six calls hanging on the old leader", || {
        group.count(|e| matches!(e, Event::Stalled(1, _))) == 6
    })
    .await;
    // GetMembers answered by the survivors (the dying member may still
    // finish a request it accepted before stopping).
    let survivors_asked = || group.count(|e| matches!(e, Event::Members(i) if *i != 1));
    let members_before = survivors_asked();

    // The new leader is elected as the old one dies; the hanging calls
    // fail only with the old leader's death.
    group.set_leader(Some(2));
    group.kill(1);

    let mut ids = Vec::new();
    for a in allocs {
        ids.push(a.await.unwrap().unwrap());
    }
    ids.sort();
    assert_eq!(ids, (base(2)..base(2) + 4).collect::<Vec<_>>());
    let ts = ts.await.unwrap().unwrap();
    assert_eq!(ts >> 18, base(2) + 1, "timestamp from the new leader");
    store_hb.await.unwrap().unwrap();
    assert!(group.saw(&Event::Served(2, "store_heartbeat")));
    assert_eq!(pd.leader_url(), group.urls[2]);
    // Six callers failed on one connection: it was replaced once, by one
    // round of GetMembers over the members still alive.
    assert_eq!(pd.leader_generation(), 1);
    let asked = survivors_asked() - members_before;
    assert!(
        (1..=2).contains(&asked),
        "one leader resolution expected, saw {asked} GetMembers"
    );
}

#[tokio::test]
async fn a_not_leader_answer_moves_the_client() {
    let group = FakeGroup::start(3, Some(1)).await;
    let pd = must_connect(&group.urls, Duration::from_secs(10)).await;
    group.set_leader(Some(2));
    assert_eq!(pd.alloc_id().await.unwrap(), base(2));
    assert!(group.saw(&Event::Refused(1, "alloc_id")));
    assert_eq!(pd.leader_generation(), 1);
    let ts = pd.get_ts().await.unwrap();
    assert_eq!(ts >> 18, base(2) + 1);
}

#[tokio::test]
async fn without_a_leader_calls_fail_after_the_deadline() {
    let group = FakeGroup::start(3, Some(1)).await;
    let deadline = Duration::from_millis(600);
    let pd = must_connect(&group.urls, deadline).await;
    group.set_leader(None);
    let started = Instant::now();
    let err = pd.alloc_id().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            PdError::GaveUp {
                call: "alloc_id",
                ..
            }
        ),
        "unexpected error {err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("no placement leader yet"), "{msg}");
    assert!(
        took >= deadline,
        "gave up after {took:?}, before the deadline"
    );
    assert!(
        took < super::pd::CALL_DEADLINE,
        "the client's own deadline applies, took {took:?}"
    );

    // Connecting while nobody leads fails too, saying why.
    let err = PdClient::connect(&group.urls, Duration::from_millis(300))
        .await
        .err()
        .expect("no leader, no client");
    assert!(matches!(err, PdError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("no placement leader yet"), "{err}");
}

#[tokio::test]
async fn answers_that_retrying_cannot_fix_are_returned_at_once() {
    let group = FakeGroup::start(1, Some(0)).await;
    let pd = must_connect(&group.urls, Duration::from_secs(10)).await;
    // The fake does not implement GetStore.
    match pd.get_store(1).await {
        Err(PdError::Rpc(s)) => assert_eq!(s.code(), tonic::Code::Unimplemented),
        other => panic!("expected Unimplemented, got {other:?}"),
    }
    assert_eq!(pd.leader_generation(), 0, "no leader change for it");
}

#[tokio::test]
async fn bad_endpoints_are_an_error_not_a_panic() {
    let err = PdClient::connect(&["http://bad host:1".into()], Duration::from_millis(100))
        .await
        .err()
        .expect("no client from a bad url");
    assert!(err.to_string().contains("bad placement url"), "{err}");
}

fn led_region(id: u64) -> RegionMeta {
    RegionMeta {
        region: metapb::Region {
            id,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![metapb::Peer {
                id: id + 1,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        },
        leader_id: id + 1,
        is_leader: true,
        term: 1,
        pending_peers: vec![],
        down_peers: vec![],
        written: Default::default(),
    }
}

/// Whether a transfer-leader operator naming `peer_id` for `region_id`
/// reached the router; other messages are drained and dropped.
fn drain_for_transfer(
    inbox: &crossbeam_channel::Receiver<StoreMsg>,
    region_id: u64,
    peer_id: u64,
) -> bool {
    let mut found = false;
    while let Ok(msg) = inbox.try_recv() {
        if let StoreMsg::TransferLeader {
            region_id: r,
            peer_id: p,
        } = msg
        {
            found |= r == region_id && p == peer_id;
        }
    }
    found
}

#[tokio::test]
async fn region_heartbeats_follow_the_leader_and_its_operators_still_run() {
    let group = FakeGroup::start(3, Some(1)).await;
    let pd = must_connect(&group.urls[..1], Duration::from_secs(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = must_open_engine(&dir).await;
    let (router, inbox) = Router::detached(1024);
    let meta = Arc::new(RwLock::new(StoreMeta::default()));
    meta.write().regions.insert(5, led_region(5));
    meta.write().regions.insert(8, led_region(8));
    // Intervals far beyond the test: after the first round, only the
    // stream's reopening can send region heartbeats.
    let hour = Duration::from_secs(3600);
    let hb = Heartbeat {
        pd,
        store: metapb::Store {
            id: 1,
            ..Default::default()
        },
        engine,
        router,
        meta,
        changed: Arc::new(Notify::new()),
        cfg: HeartbeatConfig {
            region_interval: hour,
            store_interval: hour,
            split_check_interval: hour,
            split_limits: SplitLimits {
                max_size: u64::MAX,
                max_keys: u64::MAX,
            },
        },
    };
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(hb.run(stop_rx));

    must_wait("both regions reported to the first leader", || {
        group.saw(&Event::Heartbeat(1, 5)) && group.saw(&Event::Heartbeat(1, 8))
    })
    .await;
    must_wait("the first leader's operator run", || {
        drain_for_transfer(&inbox, 5, base(1))
    })
    .await;

    group.kill(1);
    group.set_leader(Some(2));

    must_wait("both regions reported to the new leader", || {
        group.saw(&Event::Heartbeat(2, 5)) && group.saw(&Event::Heartbeat(2, 8))
    })
    .await;
    must_wait("the new leader's operator run", || {
        drain_for_transfer(&inbox, 8, base(2))
    })
    .await;
    assert!(!task.is_finished(), "the heartbeat task survived");

    // And once more, this time by a "not leader" answer from a live member.
    group.set_leader(Some(0));
    must_wait("both regions reported to the third leader", || {
        group.saw(&Event::Heartbeat(0, 5)) && group.saw(&Event::Heartbeat(0, 8))
    })
    .await;
    assert!(!task.is_finished(), "the heartbeat task survived");

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

async fn must_open_engine(dir: &tempfile::TempDir) -> Engine {
    let path = dir.path().join("db");
    tokio::task::spawn_blocking(move || Engine::open(&path))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_bootstrap_retried_after_a_lost_answer_keeps_its_region() {
    let group = FakeGroup::start(3, Some(1)).await;
    group.members[1]
        .lose_bootstrap_answer
        .store(true, Ordering::SeqCst);
    let pd = must_connect(&group.urls[..1], Duration::from_secs(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = must_open_engine(&dir).await;
    let join = tokio::spawn({
        let engine = engine.clone();
        async move {
            let store = metapb::Store {
                address: "127.0.0.1:1".into(),
                ..Default::default()
            };
            super::bootstrap::join_cluster(&engine, &pd, store).await
        }
    });
    must_wait(
        "the bootstrap applied on the old leader, answer lost",
        || group.saw(&Event::Stalled(1, "bootstrap")),
    )
    .await;
    group.set_leader(Some(2));
    group.kill(1);
    join.await.unwrap().unwrap();

    // The retry met its own success on the new leader, and the region the
    // cluster was bootstrapped with is still on this store.
    assert!(group.saw(&Event::Served(2, "bootstrap")));
    let bootstrapped = group.members[0].bootstrapped.lock().clone().unwrap();
    let local =
        tokio::task::spawn_blocking(move || crate::raftstore::peer_storage::load_regions(&engine))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        local.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![bootstrapped.id]
    );
}
