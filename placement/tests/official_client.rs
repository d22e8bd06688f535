//! The official Rust client (`tikv-client` from crates.io) connects to placement unchanged:
//! GetMembers without a header, the TSO stream, and LoadKeyspace for API V2 clients.

mod common;

use common::*;
use tikv_client::{Config, RawClient, TimestampExt, TransactionClient};

#[tokio::test]
async fn tikv_client_connects_and_reads_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let client = TransactionClient::new(vec![server.url()])
        .await
        .expect("tikv-client connects");
    let mut last = 0;
    for _ in 0..5 {
        let ts = client.current_timestamp().await.unwrap();
        assert!(ts.version() > last, "{} after {last}", ts.version());
        last = ts.version();
    }

    // API V2: the client loads the keyspace right after connecting.
    RawClient::new_with_config(
        vec![server.url()],
        Config::default().with_default_keyspace(),
    )
    .await
    .expect("DEFAULT keyspace loads");
    let unknown = RawClient::new_with_config(
        vec![server.url()],
        Config::default().with_keyspace("no_such_keyspace"),
    )
    .await;
    assert!(unknown.is_err(), "an unknown keyspace is refused");
    server.stop().await.unwrap();
}
