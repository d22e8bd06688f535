//! Connecting the official `tikv-client` to a cluster, as a user would.
//!
//! [`Api`] names the two API versions a test runs under (V1: plain keys; V2: the `DEFAULT`
//! keyspace) and builds the matching [`Config`]. The `must_*` constructors panic with the
//! cluster's logs when the client cannot connect, and [`wait_serving`] waits until a raw read
//! and a timestamp request both succeed: the point at which the cluster serves users.

use std::time::Duration;

use tikv_client::{Config, RawClient, TransactionClient};

use crate::cluster::Cluster;
use crate::error::Result;
use crate::wait::wait_for;

/// The API version a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// API V1: keys as given, no keyspace (`Config::default()`).
    V1,
    /// API V2: the `DEFAULT` keyspace (`Config::default().with_default_keyspace()`).
    V2,
}

impl Api {
    /// Both versions, V1 first.
    pub const ALL: [Api; 2] = [Api::V1, Api::V2];

    /// The client configuration for this version.
    pub fn config(self) -> Config {
        match self {
            Api::V1 => Config::default(),
            Api::V2 => Config::default().with_default_keyspace(),
        }
    }
}

/// A raw client for `api`; panics with the cluster logs if it cannot connect.
pub async fn must_raw_client(cluster: &Cluster, api: Api) -> RawClient {
    match RawClient::new_with_config(cluster.pd_endpoints(), api.config()).await {
        Ok(client) => client,
        Err(err) => panic!(
            "RawClient ({api:?}) cannot connect to {}: {err:?}\n{}",
            cluster.pd_endpoint(),
            cluster.log_tails()
        ),
    }
}

/// A transactional client for `api`; panics with the cluster logs if it cannot connect.
pub async fn must_txn_client(cluster: &Cluster, api: Api) -> TransactionClient {
    match TransactionClient::new_with_config(cluster.pd_endpoints(), api.config()).await {
        Ok(client) => client,
        Err(err) => panic!(
            "TransactionClient ({api:?}) cannot connect to {}: {err:?}\n{}",
            cluster.pd_endpoint(),
            cluster.log_tails()
        ),
    }
}

/// Waits until, for both API versions, a fresh raw client reads a key and a fresh transactional
/// client gets a timestamp. Reads only: no data is written.
pub async fn wait_serving(cluster: &Cluster, timeout: Duration) -> Result<()> {
    let pd = cluster.pd_endpoints();
    let probe = || {
        let pd = pd.clone();
        async move {
            for api in Api::ALL {
                let raw = RawClient::new_with_config(pd.clone(), api.config())
                    .await
                    .map_err(|e| format!("{api:?} raw connect: {e:?}"))?;
                raw.get(b"__e2e_probe".to_vec())
                    .await
                    .map_err(|e| format!("{api:?} raw get: {e:?}"))?;
                let txn = TransactionClient::new_with_config(pd.clone(), api.config())
                    .await
                    .map_err(|e| format!("{api:?} txn connect: {e:?}"))?;
                txn.current_timestamp()
                    .await
                    .map_err(|e| format!("{api:?} timestamp: {e:?}"))?;
            }
            Ok(())
        }
    };
    wait_for(
        "the cluster to serve raw reads and timestamps (API V1 and V2)",
        timeout,
        probe,
        || cluster.log_tails(),
    )
    .await
}

/// [`wait_serving`], panicking with the logs on timeout.
pub async fn must_serve(cluster: &Cluster, timeout: Duration) {
    if let Err(err) = wait_serving(cluster, timeout).await {
        panic!("{err}");
    }
}
