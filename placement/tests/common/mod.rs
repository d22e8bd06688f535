//! Helpers shared by the placement integration tests: start a server in-process on a free
//! loopback port with its own data directory, and connect the generated tonic clients.

#![allow(dead_code)]

pub mod group;
pub mod pd;

#[allow(unused_imports)] // not every test file talks to PD
pub use pd::TestPd;

use std::path::Path;

use placement::{Config, RunningServer};
use proto::keyspacepb::keyspace_client::KeyspaceClient;
use proto::metapb;
use proto::pdpb::pd_client::PdClient;
use proto::pdpb::{self, RequestHeader};
use tonic::transport::Channel;

/// Installs a test log subscriber once (`RUST_LOG` controls it).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A config for a server on 127.0.0.1:0 storing into `dir`.
pub fn test_config(dir: &Path) -> Config {
    Config {
        name: "pd-test".into(),
        client_urls: "http://127.0.0.1:0".into(),
        data_dir: Some(dir.to_path_buf()),
        ..Config::default()
    }
}

/// Starts a server or panics.
pub async fn must_start(dir: &Path) -> RunningServer {
    init_logging();
    placement::start(test_config(dir))
        .await
        .expect("placement starts")
}

/// A connected PD client.
pub async fn must_pd_client(server: &RunningServer) -> PdClient<Channel> {
    PdClient::connect(server.url())
        .await
        .expect("connect to placement")
}

pub async fn must_keyspace_client(server: &RunningServer) -> KeyspaceClient<Channel> {
    KeyspaceClient::connect(server.url())
        .await
        .expect("connect to placement")
}

/// One timestamp (`physical << 18 | logical`) over a fresh Tso stream, or the status the
/// server answered with.
pub async fn tso(pd: &mut PdClient<Channel>, cluster_id: u64) -> Result<u64, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pdpb::TsoRequest {
        header: header(cluster_id),
        count: 1,
        dc_location: String::new(),
    })
    .await
    .expect("the request channel is open");
    let mut stream = pd
        .tso(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let ts = stream
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unavailable("tso stream ended"))?
        .timestamp
        .ok_or_else(|| tonic::Status::internal("tso response without a timestamp"))?;
    Ok(((ts.physical as u64) << 18) | ts.logical as u64)
}

/// A request header for `cluster_id`.
pub fn header(cluster_id: u64) -> Option<RequestHeader> {
    Some(RequestHeader {
        cluster_id,
        ..Default::default()
    })
}

/// Panics unless `h` is a success header of `cluster_id`.
pub fn assert_ok_header(h: &Option<pdpb::ResponseHeader>, cluster_id: u64) {
    let h = h.as_ref().expect("response carries a header");
    assert_eq!(h.cluster_id, cluster_id);
    assert!(h.error.is_none(), "unexpected header error {:?}", h.error);
}

/// The error type of a header, or OK.
pub fn error_type(h: &Option<pdpb::ResponseHeader>) -> pdpb::ErrorType {
    h.as_ref()
        .expect("response carries a header")
        .error
        .as_ref()
        .map(|e| e.r#type())
        .unwrap_or(pdpb::ErrorType::Ok)
}

pub fn store(id: u64) -> metapb::Store {
    metapb::Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        version: "8.5.0".into(),
        ..Default::default()
    }
}

pub fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        ..Default::default()
    }
}

pub fn region(
    id: u64,
    start: &[u8],
    end: &[u8],
    version: u64,
    peers: &[metapb::Peer],
) -> metapb::Region {
    metapb::Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version,
        }),
        peers: peers.to_vec(),
        ..Default::default()
    }
}
