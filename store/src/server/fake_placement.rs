//! A mock of the placement raft group, for tests of the placement client
//! and the heartbeat task across leader changes.
//!
//! [`FakeGroup`] runs real tonic `pdpb.PD` servers on loopback that share one
//! notion of who leads (set by the test) and follow the members' contract:
//! every member answers `GetMembers` naming the leader (`Unavailable` while
//! there is none), non-leaders answer everything else with `Unavailable
//! "not leader"`, and streams end when their member loses leadership or
//! stops. Ids, timestamps and operators tell which member gave them
//! ([`base`]); what each member saw is kept as [`Event`]s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use proto::metapb;
use proto::pdpb::pd_server::{Pd, PdServer};
use proto::pdpb::*;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

pub(super) const CLUSTER_ID: u64 = 7;

/// What the members saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Event {
    Members(usize),
    Served(usize, &'static str),
    Refused(usize, &'static str),
    Stalled(usize, &'static str),
    Heartbeat(usize, u64),
}

pub(super) struct FakeMember {
    idx: usize,
    urls: Vec<String>,
    leader: watch::Receiver<Option<usize>>,
    alive: watch::Sender<bool>,
    /// While set, requests hang until the member is stopped.
    pub(super) stall: AtomicBool,
    /// While set, a bootstrap is applied but its answer never sent (the
    /// request hangs until the member is stopped).
    pub(super) lose_bootstrap_answer: AtomicBool,
    /// The region the group was bootstrapped with, shared by all members.
    pub(super) bootstrapped: Arc<Mutex<Option<metapb::Region>>>,
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
pub(super) fn base(idx: usize) -> u64 {
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
pub(super) struct FakeGroup {
    pub(super) members: Vec<Arc<FakeMember>>,
    pub(super) urls: Vec<String>,
    leader: watch::Sender<Option<usize>>,
    stops: Mutex<Vec<Option<oneshot::Sender<()>>>>,
    events: Arc<Mutex<Vec<Event>>>,
}

impl FakeGroup {
    pub(super) async fn start(n: usize, leader: Option<usize>) -> FakeGroup {
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

    pub(super) fn set_leader(&self, leader: Option<usize>) {
        self.leader.send_replace(leader);
    }

    /// Stops member `idx`: its hanging requests fail, its streams end and it
    /// accepts no new connections.
    pub(super) fn kill(&self, idx: usize) {
        self.members[idx].alive.send_replace(false);
        if let Some(stop) = self.stops.lock()[idx].take() {
            let _ = stop.send(());
        }
    }

    pub(super) fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.events.lock().iter().filter(|e| pred(e)).count()
    }

    pub(super) fn saw(&self, e: &Event) -> bool {
        self.events.lock().contains(e)
    }
}
