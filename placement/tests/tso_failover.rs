//! Timestamps never go backwards across a change of placement leader, whatever the old leader
//! was doing when it lost its place (in-process group, real raft over gRPC on loopback, real
//! RocksDB, raft traffic cut with the member transport's filters):
//!
//! - a TSO request that waits for the next window to be replicated while its leader is cut
//!   off, the others elect a successor and the successor serves, must not be answered with a
//!   timestamp below the successor's once the old leader hears of the window again;
//! - a leader handing leadership over stops handing out timestamps at once;
//! - `GetMinTS` obeys the same guard as the Tso stream.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::group::*;
use common::*;
use placement::config::ReadableDuration;
use placement::member::filter::{BlockPeers, DropFirst};
use proto::pdpb::{self, pd_client::PdClient, TsoRequest, TsoResponse};
use raft::eraftpb::MessageType;
use testkit::wait;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::Streaming;

/// The largest batch one TSO request may ask for: each such request moves the physical part
/// of the clock one millisecond ahead.
const MAX_COUNT: u32 = (1 << 18) - 1;

/// One long-lived Tso stream, as a client keeps it.
struct TsoStream {
    tx: mpsc::Sender<TsoRequest>,
    rx: Streaming<TsoResponse>,
    cluster_id: u64,
}

impl TsoStream {
    async fn open(pd: &mut PdClient<Channel>, cluster_id: u64) -> TsoStream {
        let (tx, requests) = mpsc::channel(1);
        let rx = pd
            .tso(tokio_stream::wrappers::ReceiverStream::new(requests))
            .await
            .expect("tso stream opens")
            .into_inner();
        TsoStream { tx, rx, cluster_id }
    }

    /// The largest timestamp of a batch of `count`, or the status the stream ended with.
    async fn next(&mut self, count: u32) -> Result<u64, tonic::Status> {
        let request = TsoRequest {
            header: header(self.cluster_id),
            count,
            dc_location: String::new(),
        };
        self.tx
            .send(request)
            .await
            .map_err(|_| tonic::Status::cancelled("tso stream closed"))?;
        let resp = self
            .rx
            .message()
            .await?
            .ok_or_else(|| tonic::Status::unavailable("tso stream ended"))?;
        let ts = resp.timestamp.expect("a tso response carries a timestamp");
        Ok(((ts.physical as u64) << 18) | ts.logical as u64)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A timestamp from member `i`, retried until it serves (at most `timeout`).
async fn must_tso(group: &Group, i: usize, cid: u64, timeout: Duration) -> u64 {
    let pd = client(group.server(i)).await;
    wait::for_(format!("a timestamp from pd{i}"))
        .within(timeout)
        .every(Duration::from_millis(50))
        .until_ok(|| {
            let mut pd = pd.clone();
            async move { tso(&mut pd, cid).await.map_err(|status| status.to_string()) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until a member other than `old` serves as leader; returns it.
async fn must_successor(group: &Group, old: usize, timeout: Duration) -> usize {
    wait::for_(format!("a successor of pd{old} to lead"))
        .within(timeout)
        .every(Duration::from_millis(50))
        .until_some(|| {
            (0..group.servers.len())
                .filter(|i| *i != old && group.servers[*i].is_some())
                .find(|i| group.server(*i).state().is_leader())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tso_request_waiting_through_a_failover_never_goes_below_the_successor() {
    // A short window, so that requests themselves persist the next one.
    let mut group = Group::start_with(3, |c| {
        c.tso_save_interval = ReadableDuration(Duration::from_millis(100));
    })
    .await;
    let old = group.leader(Duration::from_secs(20)).await;
    let cid = group.server(old).cluster_id();
    let oracle = group.server(old).state().clone();
    let mut pd = client(group.server(old)).await;
    let mut stream = TsoStream::open(&mut pd, cid).await;

    // Run the clock well ahead of the wall clock (each full batch moves it 1 ms), so the
    // old leader's next window lies beyond the whole failover, then stop right before a
    // request that must persist the next window.
    let started = Instant::now();
    let last = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "could not run the TSO ahead of the clock"
        );
        let ts = match stream.next(MAX_COUNT).await {
            Ok(ts) => ts,
            // A new leader serves before its first lease, and on a loaded
            // machine a lease can lapse: clients retry, so does the test.
            Err(s) if s.code() == tonic::Code::Unavailable && s.message().contains("lease") => {
                assert!(oracle.is_leader(), "leadership moved before the cut: {s}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                stream = TsoStream::open(&mut pd, cid).await;
                continue;
            }
            Err(s) => panic!("timestamps before the cut: {s}"),
        };
        let physical = (ts >> 18) as i64;
        if physical - now_ms() > 20_000 && physical + 1 >= oracle.tso.saved_limit() {
            break ts;
        }
    };

    // Cut the leader off: it still sends (so the others store its new window), but hears
    // nothing back, so the window never commits on its side and it loses leadership.
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let old_id = oracle.member_id;
    for i in &others {
        let cut = BlockPeers(BTreeSet::from([old_id]));
        group.server(*i).state().writer.filters().add(cut);
    }
    let waiting = tokio::spawn(async move {
        let answer = stream.next(MAX_COUNT).await;
        (answer, Instant::now())
    });

    let new = must_successor(&group, old, Duration::from_secs(20)).await;
    let successor_ts = must_tso(&group, new, cid, Duration::from_secs(10)).await;
    let successor_at = Instant::now();
    assert!(
        successor_ts > last,
        "the successor starts above the old leader"
    );

    // The old leader hears from the others again, and learns that its window committed.
    for i in &others {
        group.server(*i).state().writer.filters().clear();
    }
    let (answer, answered_at) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the waiting request is answered")
        .unwrap();
    assert!(answered_at > successor_at);
    if let Ok(ts) = answer {
        assert!(
            ts > successor_ts,
            "pd{old} handed out {ts} after pd{new} had handed out {successor_ts}"
        );
    }
    let after = must_tso(&group, new, cid, Duration::from_secs(10)).await;
    assert!(after > successor_ts);
    group.stop_all().await;
}

/// Starts a leadership transfer away from the leader that stays pending: the transferee
/// never gets the go-ahead, so the transfer lasts until raft gives up on it (one election
/// timeout). Returns the leader's index.
async fn must_start_handing_over(group: &Group) -> usize {
    let leader = group.leader(Duration::from_secs(20)).await;
    let state = group.server(leader).state().clone();
    state
        .writer
        .filters()
        .add(DropFirst::new(MessageType::MsgTimeoutNow, 1000));
    let to = (0..3).find(|i| *i != leader).unwrap();
    let to_id = group.server(to).state().member_id;
    state.writer.transfer_leader(to_id).unwrap();
    leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_handing_over_stops_handing_out_timestamps() {
    let mut group = Group::start(3).await;
    let leader = group.leader(Duration::from_secs(20)).await;
    let cid = group.server(leader).cluster_id();
    let mut pd = client(group.server(leader)).await;
    tso(&mut pd, cid)
        .await
        .expect("timestamps before the transfer");
    must_start_handing_over(&group).await;
    // Once the raft thread has started the transfer, the transferee may be elected at any
    // moment without waiting for this leader's lease to run out.
    let asked = Instant::now();
    let refused = loop {
        match tso(&mut pd, cid).await {
            Err(status) => break status,
            Ok(_) => assert!(
                asked.elapsed() < Duration::from_millis(500),
                "the leader kept handing out timestamps while handing over"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    group.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_min_ts_is_refused_by_a_leader_handing_over() {
    let mut group = Group::start(3).await;
    let leader = group.leader(Duration::from_secs(20)).await;
    let cid = group.server(leader).cluster_id();
    let mut pd = client(group.server(leader)).await;
    let request = || pdpb::GetMinTsRequest {
        header: header(cid),
    };
    let first = pd.get_min_ts(request()).await.expect("GetMinTS before");
    assert_ok_header(&first.get_ref().header, cid);
    must_start_handing_over(&group).await;
    let asked = Instant::now();
    let refused = loop {
        match pd.get_min_ts(request()).await {
            Err(status) => break status,
            Ok(resp) => assert!(
                asked.elapsed() < Duration::from_millis(500),
                "GetMinTS kept answering while the leader hands over: {:?}",
                resp.get_ref()
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    group.stop_all().await;
}
