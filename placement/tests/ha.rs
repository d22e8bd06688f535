//! A group of three placement members in-process (real raft over gRPC on loopback, real
//! RocksDB): one leader serves, the others answer GetMembers with it and refuse the rest;
//! metadata written through the leader is on every member; when the leader stops, another
//! takes over within seconds with the metadata and a TSO above every timestamp handed out
//! before; a stopped member restarts and catches up; a member is removed and a new one joins;
//! a leader cut off from its quorum stops handing out timestamps (its lease runs out).

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;
use proto::pdpb;
use testkit::wait;

/// GetMembers from one member once it names a leader. The leader may serve a few
/// milliseconds before the slowest member has heard from it; until then that member answers
/// Unavailable (and clients ask another one).
async fn must_name_a_leader(
    pd: &mut proto::pdpb::pd_client::PdClient<tonic::transport::Channel>,
) -> pdpb::GetMembersResponse {
    let client = pd.clone();
    wait::for_("a leader named in GetMembers")
        .within(Duration::from_secs(5))
        .until_ok(|| {
            let mut pd = client.clone();
            async move {
                match pd.get_members(pdpb::GetMembersRequest::default()).await {
                    Ok(resp) => Ok(resp.into_inner()),
                    Err(status) => {
                        assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                        Err(status.to_string())
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_replicate_fail_over_and_rejoin() {
    let mut group = Group::start(3).await;
    let leader = group.leader(Duration::from_secs(20)).await;
    let cid = group.server(leader).cluster_id();
    for i in 0..3 {
        assert_eq!(
            group.server(i).cluster_id(),
            cid,
            "members agree on the cluster id"
        );
    }

    // Every member names the leader; followers refuse other calls with Unavailable.
    for i in 0..3 {
        let mut pd = client(group.server(i)).await;
        let members = must_name_a_leader(&mut pd).await;
        assert_eq!(members.members.len(), 3);
        assert_eq!(members.leader.unwrap().name, format!("pd{leader}"));
        if i != leader {
            let mut follower = TestPd::new(pd, cid);
            let err = follower.alloc_id().await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
            assert!(err.message().contains("not leader"), "{err}");
        }
    }

    // Metadata through the leader, and timestamps.
    let mut pd = TestPd::connect(group.server(leader)).await;
    let (store_id, _region_id, _peer) = pd.must_bootstrap_cluster().await;
    pd.must_put_store(store(77)).await;
    let mut last_ts = 0;
    for _ in 0..20 {
        let ts = pd.tso().await.unwrap();
        assert!(ts > last_ts);
        last_ts = ts;
    }
    let id_before = pd.must_alloc_id().await;

    // The leader goes; another member takes over with the same metadata.
    let took = Instant::now();
    group.stop(leader).await;
    let new_leader = group.leader(Duration::from_secs(10)).await;
    let failover = took.elapsed();
    assert_ne!(new_leader, leader);
    eprintln!("PLACEMENT_FAILOVER_MS={}", failover.as_millis());
    let mut pd = TestPd::connect(group.server(new_leader)).await;
    assert_eq!(pd.must_get_store(77).await.id, 77);
    assert!(pd.must_is_bootstrapped().await);
    let ts = pd.tso().await.unwrap();
    assert!(
        ts > last_ts,
        "TSO went backwards across failover: {ts} <= {last_ts}"
    );
    let id_after = pd.must_alloc_id().await;
    assert!(id_after > id_before, "ids repeat across failover");
    let _ = store_id;

    // The command-line tool, asked through a follower, shows the new leader and, once it has
    // been silent for the health window, the dead one as down.
    let follower = (0..3).find(|i| *i != leader && *i != new_leader).unwrap();
    let url = group.server(follower).url();
    wait::for_(format!("`members` to show pd{leader} down"))
        .within(Duration::from_secs(10))
        .every(Duration::from_millis(200))
        .until_ok(|| async {
            let table = placement::ctl::run(&url, &placement::ctl::Command::Members)
                .await
                .unwrap();
            let row = |name: String| {
                table
                    .lines()
                    .find(|l| l.starts_with(&name))
                    .unwrap_or_else(|| panic!("{name} missing from\n{table}"))
                    .to_owned()
            };
            assert!(row(format!("pd{new_leader}")).contains("leader"), "{table}");
            if row(format!("pd{leader}")).ends_with("down") {
                Ok(())
            } else {
                Err(table)
            }
        })
        .await
        .unwrap_or_else(|timeout| panic!("{timeout}"));

    // The old leader comes back as a follower and catches up.
    group.restart(leader).await;
    pd.must_put_store(store(78)).await;
    let back = group.leader(Duration::from_secs(10)).await;
    assert_eq!(
        back, new_leader,
        "a returning member does not disturb the leader"
    );
    let rejoined = group.server(leader).state().clone();
    wait::for_("the restarted member to learn the leader")
        .within(Duration::from_secs(10))
        .every(Duration::from_millis(50))
        .until(|| rejoined.member.leader_id() == group.server(new_leader).state().member_id)
        .await;

    // Leadership moves back on request, with the metadata written while it was away.
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/pd/api/v1/leader/transfer/pd{leader}",
            group.server(new_leader).url()
        ))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let now = group.leader(Duration::from_secs(10)).await;
    assert_eq!(now, leader);
    let mut pd = TestPd::connect(group.server(leader)).await;
    pd.must_get_store(78).await;
    let ts2 = pd.tso().await.unwrap();
    assert!(ts2 > ts);

    // A follower forwards HTTP API calls to the leader.
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let stores: serde_json::Value =
        reqwest::get(format!("{}/pd/api/v1/stores", group.server(follower).url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert!(stores["count"].as_u64().unwrap() >= 2, "{stores}");

    group.stop_all().await;
    drop(group.dirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_is_removed_and_a_new_one_joins() {
    let mut group = Group::start(3).await;
    let leader = group.leader(Duration::from_secs(20)).await;
    let cid = group.server(leader).cluster_id();
    let mut pd = TestPd::connect(group.server(leader)).await;
    pd.must_bootstrap_cluster().await;
    let http = reqwest::Client::new();
    let victim = (0..3).find(|i| *i != leader).unwrap();
    let resp = http
        .delete(format!(
            "{}/pd/api/v1/members/name/pd{victim}",
            group.server(leader).url()
        ))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    group.stop(victim).await;
    let members = pd.get_members().await.unwrap().members;
    assert_eq!(members.len(), 2, "{members:?}");

    // The leader cannot remove itself.
    let resp = http
        .delete(format!(
            "{}/pd/api/v1/members/name/pd{leader}",
            group.server(leader).url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A new member named in an extended initial-cluster joins the running group.
    let (joined, _dir) = must_join(&group, leader, "pd9", &mut pd, 3).await;
    let state = joined.state().clone();
    // The joined member holds the metadata written before it joined (from the snapshot):
    // hand it leadership and ask it.
    let resp = http
        .post(format!(
            "{}/pd/api/v1/leader/transfer/pd9",
            group.server(leader).url()
        ))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    wait::for_("the new member to lead")
        .within(Duration::from_secs(15))
        .every(Duration::from_millis(50))
        .until(|| state.is_leader())
        .await;
    let mut c = TestPd::new(client(&joined).await, cid);
    let bootstrapped = c.must_is_bootstrapped().await;
    assert!(bootstrapped, "the joined member lacks the metadata");
    joined.stop().await.unwrap();
    group.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_its_quorum_stops_handing_out_timestamps() {
    let mut group = Group::start(3).await;
    let leader = group.leader(Duration::from_secs(20)).await;
    let cid = group.server(leader).cluster_id();
    let mut pd = client(group.server(leader)).await;
    TestPd::new(pd.clone(), cid).must_bootstrap_cluster().await;
    tso(&mut pd, cid)
        .await
        .expect("timestamps while the quorum is there");
    // Both followers go: the leader can no longer prove that nobody else leads.
    for i in (0..3).filter(|i| *i != leader) {
        group.stop(i).await;
    }
    let cut_off = Instant::now();
    let refused = loop {
        match tso(&mut pd, cid).await {
            Err(status) => break status,
            Ok(_) => {
                assert!(
                    cut_off.elapsed() < Duration::from_secs(5),
                    "a leader without its quorum kept handing out timestamps"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    // Measured from when both followers had stopped (their last heartbeat answers came
    // earlier); the lease itself lasts 0.8 s from the last confirmed round.
    eprintln!("TSO_REFUSED_AFTER_MS={}", cut_off.elapsed().as_millis());
    group.stop(leader).await;
}

/// The client URLs each member reports for every member, by member name (empty when the
/// member does not know them).
async fn reported_urls(
    server: &placement::RunningServer,
) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut pd = TestPd::connect(server).await;
    let resp = pd.get_members().await.map_err(|s| s.to_string())?;
    let mut urls: Vec<(String, Vec<String>)> = resp
        .members
        .into_iter()
        .map(|m| (m.name, m.client_urls))
        .collect();
    urls.sort();
    Ok(urls)
}

/// Followers exchange no raft messages with each other, yet each must report every member's
/// client URLs: the Java client takes `client_urls[0]` of every member GetMembers lists and
/// fails on an empty list. Every member, followers too, answers the standard gRPC health
/// check SERVING (PD's embedded etcd does; client-go's PD client probes members with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_member_lists_every_members_urls_and_serves_grpc_health() {
    let mut group = Group::start(3).await;
    group.leader(Duration::from_secs(20)).await;
    let want: Vec<(String, Vec<String>)> = (0..3)
        .map(|i| (format!("pd{i}"), vec![group.server(i).url()]))
        .collect();
    for i in 0..3 {
        wait::for_(format!("member pd{i} to report {want:?}"))
            .within(Duration::from_secs(10))
            .every(Duration::from_millis(100))
            .until_ok(|| async {
                let got = reported_urls(group.server(i)).await;
                if got.as_ref() == Ok(&want) {
                    Ok(())
                } else {
                    Err(format!("reports {got:?}"))
                }
            })
            .await
            .unwrap_or_else(|timeout| panic!("{timeout}"));
        let channel = tonic::transport::Channel::from_shared(group.server(i).url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap_or_else(|s| panic!("health check of pd{i}: {s}"))
            .into_inner();
        assert_eq!(
            health.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    group.stop_all().await;
}

/// A one-member group started from an `initial-cluster` naming only itself (what the operator
/// renders for `placement.replicas: 1`) grows: a member started later with the extended list
/// joins it, the same cluster, and does not start a group of its own. (The Kubernetes suite
/// found the lone member serving no peer port, so the newcomer heard nobody and bootstrapped
/// a second cluster with another id.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_member_group_grows_by_joins() {
    let group = Group::start(1).await;
    let leader = group.leader(Duration::from_secs(20)).await;
    assert_eq!(leader, 0);
    let cid = group.server(0).cluster_id();
    let mut pd = TestPd::connect(group.server(0)).await;
    pd.must_bootstrap_cluster().await;

    let (joined, _dir) = must_join(&group, 0, "pd1", &mut pd, 2).await;
    assert_eq!(
        joined.cluster_id(),
        cid,
        "the newcomer joined the running cluster"
    );
    joined.stop().await.unwrap();
}

/// Starts member `name` with `group`'s initial-cluster extended by it, and waits until it
/// follows member `leader` with `voters` voters and the member list names it. Returns the
/// member and its data directory.
async fn must_join(
    group: &Group,
    leader: usize,
    name: &str,
    pd: &mut TestPd,
    voters: usize,
) -> (placement::RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (client_port, peer_port) = (free_port(), free_port());
    let mut initial = group.configs[leader].initial_cluster.clone().unwrap();
    initial.push_str(&format!(",{name}=http://127.0.0.1:{peer_port}"));
    let config = member_config(dir.path(), name, client_port, peer_port, &initial);
    let joined = placement::start(config).await.unwrap();
    let state = joined.state().clone();
    let leader_id = group.server(leader).state().member_id;
    wait::for_("the new member to follow the leader")
        .within(Duration::from_secs(15))
        .every(Duration::from_millis(50))
        .until(|| state.member.leader_id() == leader_id && state.member.voters().len() == voters)
        .await;
    let members = pd.get_members().await.unwrap().members;
    assert!(members.iter().any(|m| m.name == name), "{members:?}");
    assert_eq!(members.len(), voters, "{members:?}");
    (joined, dir)
}
