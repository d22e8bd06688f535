//! The store's client of the placement service (`pdpb.PD`).
//!
//! [`PdClient`] finds the placement leader through `GetMembers`, then makes
//! the calls a store needs: id allocation, bootstrap, store registration and
//! the store and region heartbeats. Every call checks the response header.

use std::time::{Duration, Instant};

use proto::metapb;
use proto::pdpb::pd_client::PdClient as GrpcPd;
use proto::pdpb::{self, RequestHeader, ResponseHeader};
use tokio::sync::mpsc;
use tonic::transport::Channel;

#[derive(Debug, thiserror::Error)]
pub enum PdError {
    #[error("placement unreachable at {endpoints}: {reason}")]
    Unreachable { endpoints: String, reason: String },
    #[error("placement rpc failed: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("placement returned {kind:?}: {message}")]
    Header {
        kind: pdpb::ErrorType,
        message: String,
    },
}

#[derive(Clone)]
pub struct PdClient {
    client: GrpcPd<Channel>,
    cluster_id: u64,
    endpoints: Vec<String>,
}

fn with_scheme(url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

fn check(header: Option<ResponseHeader>) -> Result<(), PdError> {
    match header.and_then(|h| h.error) {
        Some(e) if e.r#type != pdpb::ErrorType::Ok as i32 => Err(PdError::Header {
            kind: pdpb::ErrorType::try_from(e.r#type).unwrap_or(pdpb::ErrorType::Unknown),
            message: e.message,
        }),
        _ => Ok(()),
    }
}

async fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(with_scheme(url))
        .expect("valid uri")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
}

impl PdClient {
    /// Connects to the placement leader, retrying until `timeout` passes.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<PdClient, PdError> {
        let deadline = Instant::now() + timeout;
        loop {
            match Self::try_connect(endpoints).await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::info!(error = %e, "waiting for placement");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn try_connect(endpoints: &[String]) -> Result<PdClient, PdError> {
        let mut last = String::from("no endpoints");
        for ep in endpoints {
            let mut c = match channel(ep).await {
                Ok(ch) => GrpcPd::new(ch),
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let resp = match c.get_members(pdpb::GetMembersRequest::default()).await {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let cluster_id = resp.header.as_ref().map(|h| h.cluster_id).unwrap_or(0);
            let leader_url = resp.leader.and_then(|l| l.client_urls.into_iter().next());
            let client = match leader_url {
                Some(url)
                    if url.trim_start_matches("http://") != ep.trim_start_matches("http://") =>
                {
                    match channel(&url).await {
                        Ok(ch) => GrpcPd::new(ch),
                        Err(e) => {
                            last = e.to_string();
                            continue;
                        }
                    }
                }
                _ => c,
            };
            return Ok(PdClient {
                client,
                cluster_id,
                endpoints: endpoints.to_vec(),
            });
        }
        Err(PdError::Unreachable {
            endpoints: endpoints.join(","),
            reason: last,
        })
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn header(&self) -> Option<RequestHeader> {
        Some(RequestHeader {
            cluster_id: self.cluster_id,
            ..Default::default()
        })
    }

    pub async fn alloc_id(&self) -> Result<u64, PdError> {
        let resp = self
            .client
            .clone()
            .alloc_id(pdpb::AllocIdRequest {
                header: self.header(),
            })
            .await?
            .into_inner();
        check(resp.header)?;
        Ok(resp.id)
    }

    pub async fn is_bootstrapped(&self) -> Result<bool, PdError> {
        let resp = self
            .client
            .clone()
            .is_bootstrapped(pdpb::IsBootstrappedRequest {
                header: self.header(),
            })
            .await?
            .into_inner();
        check(resp.header)?;
        Ok(resp.bootstrapped)
    }

    pub async fn bootstrap(
        &self,
        store: metapb::Store,
        region: metapb::Region,
    ) -> Result<(), PdError> {
        let resp = self
            .client
            .clone()
            .bootstrap(pdpb::BootstrapRequest {
                header: self.header(),
                store: Some(store),
                region: Some(region),
            })
            .await?
            .into_inner();
        check(resp.header)
    }

    pub async fn get_store(&self, store_id: u64) -> Result<metapb::Store, PdError> {
        let resp = self
            .client
            .clone()
            .get_store(pdpb::GetStoreRequest {
                header: self.header(),
                store_id,
            })
            .await?
            .into_inner();
        check(resp.header)?;
        resp.store.ok_or(PdError::Header {
            kind: pdpb::ErrorType::Unknown,
            message: format!("store {store_id} not found"),
        })
    }

    pub async fn put_store(&self, store: metapb::Store) -> Result<(), PdError> {
        let resp = self
            .client
            .clone()
            .put_store(pdpb::PutStoreRequest {
                header: self.header(),
                store: Some(store),
            })
            .await?
            .into_inner();
        check(resp.header)
    }

    pub async fn store_heartbeat(&self, stats: pdpb::StoreStats) -> Result<(), PdError> {
        let resp = self
            .client
            .clone()
            .store_heartbeat(pdpb::StoreHeartbeatRequest {
                header: self.header(),
                stats: Some(stats),
            })
            .await?
            .into_inner();
        check(resp.header)
    }

    /// Opens the region heartbeat stream: send requests into the returned
    /// sender; placement's answers (operators) come out of the receiver.
    pub async fn region_heartbeat_stream(
        &self,
    ) -> Result<
        (
            mpsc::Sender<pdpb::RegionHeartbeatRequest>,
            mpsc::Receiver<pdpb::RegionHeartbeatResponse>,
        ),
        PdError,
    > {
        let (tx, rx) = mpsc::channel(256);
        let (resp_tx, resp_rx) = mpsc::channel(256);
        let mut responses = self
            .client
            .clone()
            .region_heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        tokio::spawn(async move {
            while let Ok(Some(resp)) = responses.message().await {
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
    ) -> Result<Vec<pdpb::SplitId>, PdError> {
        let resp = self
            .client
            .clone()
            .ask_batch_split(pdpb::AskBatchSplitRequest {
                header: self.header(),
                region: Some(region),
                split_count: count as u32,
            })
            .await?
            .into_inner();
        check(resp.header)?;
        Ok(resp.ids)
    }

    pub async fn report_batch_split(&self, regions: Vec<metapb::Region>) -> Result<(), PdError> {
        let resp = self
            .client
            .clone()
            .report_batch_split(pdpb::ReportBatchSplitRequest {
                header: self.header(),
                regions,
            })
            .await?
            .into_inner();
        check(resp.header)
    }

    /// One fresh timestamp (`physical << 18 | logical`) from the oracle.
    pub async fn get_ts(&self) -> Result<u64, PdError> {
        let req = pdpb::TsoRequest {
            header: self.header(),
            count: 1,
            ..Default::default()
        };
        let mut stream = self
            .client
            .clone()
            .tso(tokio_stream::iter(vec![req]))
            .await?
            .into_inner();
        let resp = stream
            .message()
            .await?
            .ok_or_else(|| PdError::Rpc(tonic::Status::unavailable("tso stream closed")))?;
        check(resp.header)?;
        let ts = resp.timestamp.unwrap_or_default();
        Ok(((ts.physical as u64) << 18) | ts.logical as u64)
    }

    pub fn request_header(&self) -> Option<RequestHeader> {
        self.header()
    }
}

impl crate::storage::TsoSource for PdClient {
    fn get_ts(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send + '_>> {
        Box::pin(async move { PdClient::get_ts(self).await.map_err(|e| e.to_string()) })
    }
}
