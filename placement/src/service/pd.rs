//! `pdpb.PD` unary RPCs ([`PdService`]); the two streams (`Tso`, `RegionHeartbeat`) live in
//! [`super::streams`]. Semantics follow PD's `server/grpc_service.go`: region lookups that find
//! nothing answer `region: None` with a success header, lookups before bootstrap answer
//! `NOT_BOOTSTRAPPED`, and `GetMembers` / `GetClusterInfo` need no cluster id.

use std::sync::Arc;

use proto::metapb;
use proto::pdpb::pd_server::Pd;
use proto::pdpb::*;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::region_ops::{self, apply_split, region_response, scan_entry, split_ids};
use super::{Call, WithHeader};
use crate::cluster::Observed;
use crate::error::{Error, Result};
use crate::state::{now_ms, now_secs, Placement, VERSION};

/// The `pdpb.PD` service.
#[derive(Clone)]
pub struct PdService {
    pub(crate) state: Arc<Placement>,
}

type Rpc<T> = std::result::Result<Response<T>, Status>;

impl PdService {
    pub fn new(state: Arc<Placement>) -> Self {
        PdService { state }
    }

    fn call(&self, method: &'static str) -> Call<'_> {
        Call::new(&self.state, method)
    }

    /// Runs a read against a bootstrapped view.
    fn read<T>(&self, f: impl FnOnce(&crate::cluster::ClusterView) -> Result<T>) -> Result<T> {
        region_ops::read(&self.state, f)
    }
}

fn ok<T: WithHeader>(t: T) -> Result<T> {
    Ok(t)
}

#[tonic::async_trait]
impl Pd for PdService {
    #[tracing::instrument(skip_all)]
    async fn get_cluster_info(
        &self,
        _request: Request<GetClusterInfoRequest>,
    ) -> Rpc<GetClusterInfoResponse> {
        self.call("GetClusterInfo")
            .reply(ok(GetClusterInfoResponse {
                service_modes: vec![ServiceMode::PdSvcMode as i32],
                ..Default::default()
            }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_members(&self, _request: Request<GetMembersRequest>) -> Rpc<GetMembersResponse> {
        // Clients trust the `leader` of the first answer: answer only once it is known and
        // reachable (its client URLs learnt), else let them try another member.
        let leader = self
            .state
            .leader_member()
            .filter(|l| !l.client_urls.is_empty())
            .ok_or_else(|| Status::unavailable("no placement leader elected yet"))?;
        self.call("GetMembers").reply(ok(GetMembersResponse {
            members: self.state.members(),
            leader: Some(leader.clone()),
            etcd_leader: Some(leader),
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn tso(&self, request: Request<Streaming<TsoRequest>>) -> Rpc<BoxStream<TsoResponse>> {
        Ok(Response::new(super::streams::tso(
            self.state.clone(),
            request.into_inner(),
        )))
    }

    #[tracing::instrument(skip_all, fields(store_id = request.get_ref().store.as_ref().map(|s| s.id)))]
    async fn bootstrap(&self, request: Request<BootstrapRequest>) -> Rpc<BootstrapResponse> {
        let call = self.call("Bootstrap");
        let req = request.into_inner();
        call.check_header(req.header.as_ref())?;
        let max_replicas = self.state.config.max_replicas;
        let result = match (req.store, req.region) {
            (Some(store), Some(region)) => {
                self.state
                    .commit(|view| Ok(((), view.plan_bootstrap(&store, &region, max_replicas)?)))
                    .await
            }
            _ => Err(Error::invalid("bootstrap needs a store and a region")),
        };
        if result.is_ok() {
            tracing::info!(cluster_id = self.state.cluster_id, "cluster bootstrapped");
        }
        call.reply(result.map(|()| BootstrapResponse::default()))
    }

    #[tracing::instrument(skip_all)]
    async fn is_bootstrapped(
        &self,
        request: Request<IsBootstrappedRequest>,
    ) -> Rpc<IsBootstrappedResponse> {
        let call = self.call("IsBootstrapped");
        call.check_header(request.get_ref().header.as_ref())?;
        let bootstrapped = self.state.view().is_bootstrapped();
        call.reply(ok(IsBootstrappedResponse {
            bootstrapped,
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn alloc_id(&self, request: Request<AllocIdRequest>) -> Rpc<AllocIdResponse> {
        let call = self.call("AllocID");
        call.check_header(request.get_ref().header.as_ref())?;
        let id = self.state.ids.alloc().await;
        call.reply(id.map(|id| AllocIdResponse {
            id,
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all, fields(store_id = request.get_ref().store_id))]
    async fn get_store(&self, request: Request<GetStoreRequest>) -> Rpc<GetStoreResponse> {
        let call = self.call("GetStore");
        call.check_header(request.get_ref().header.as_ref())?;
        let id = request.get_ref().store_id;
        let result = self.read(|view| {
            let s = view.store(id)?;
            Ok(GetStoreResponse {
                store: Some(s.meta.clone()),
                stats: s.stats.clone(),
                ..Default::default()
            })
        });
        call.reply(result)
    }

    #[tracing::instrument(skip_all, fields(store_id = request.get_ref().store.as_ref().map(|s| s.id)))]
    async fn put_store(&self, request: Request<PutStoreRequest>) -> Rpc<PutStoreResponse> {
        let call = self.call("PutStore");
        let req = request.into_inner();
        call.check_header(req.header.as_ref())?;
        let result = match req.store {
            Some(store) => {
                let r = self
                    .state
                    .commit(|view| Ok(((), view.plan_put_store(&store)?)))
                    .await;
                if r.is_ok() {
                    tracing::info!(store_id = store.id, address = %store.address, "store registered");
                }
                r
            }
            None => Err(Error::invalid("missing store")),
        };
        call.reply(result.map(|()| PutStoreResponse::default()))
    }

    #[tracing::instrument(skip_all)]
    async fn get_all_stores(
        &self,
        request: Request<GetAllStoresRequest>,
    ) -> Rpc<GetAllStoresResponse> {
        let call = self.call("GetAllStores");
        call.check_header(request.get_ref().header.as_ref())?;
        let exclude = request.get_ref().exclude_tombstone_stores;
        let result = self.read(|view| {
            let stores = view
                .stores()
                .filter(|s| !(exclude && s.is_tombstone()))
                .map(|s| s.meta.clone())
                .collect();
            Ok(GetAllStoresResponse {
                stores,
                ..Default::default()
            })
        });
        call.reply(result)
    }

    #[tracing::instrument(skip_all, fields(store_id = request.get_ref().stats.as_ref().map(|s| s.store_id)))]
    async fn store_heartbeat(
        &self,
        request: Request<StoreHeartbeatRequest>,
    ) -> Rpc<StoreHeartbeatResponse> {
        let call = self.call("StoreHeartbeat");
        let req = request.into_inner();
        call.check_header(req.header.as_ref())?;
        let result = match req.stats {
            Some(stats) => {
                let now_ms = now_ms();
                let change = Observed::StoreStats { stats, now_ms };
                self.state.observe(change, |_| ())
            }
            None => Err(Error::invalid("store heartbeat without stats")),
        };
        call.reply(result.map(|()| StoreHeartbeatResponse {
            cluster_version: VERSION.to_owned(),
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn region_heartbeat(
        &self,
        request: Request<Streaming<RegionHeartbeatRequest>>,
    ) -> Rpc<BoxStream<RegionHeartbeatResponse>> {
        Ok(Response::new(super::streams::region_heartbeat(
            self.state.clone(),
            request.into_inner(),
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn get_region(&self, request: Request<GetRegionRequest>) -> Rpc<GetRegionResponse> {
        let call = self.call("GetRegion");
        call.check_header(request.get_ref().header.as_ref())?;
        let key = &request.get_ref().region_key;
        call.reply(self.read(|view| Ok(region_response(view.regions().by_key(key)))))
    }

    #[tracing::instrument(skip_all)]
    async fn get_prev_region(&self, request: Request<GetRegionRequest>) -> Rpc<GetRegionResponse> {
        let call = self.call("GetPrevRegion");
        call.check_header(request.get_ref().header.as_ref())?;
        let key = &request.get_ref().region_key;
        call.reply(self.read(|view| Ok(region_response(view.regions().prev_of(key)))))
    }

    #[tracing::instrument(skip_all, fields(region_id = request.get_ref().region_id))]
    async fn get_region_by_id(
        &self,
        request: Request<GetRegionByIdRequest>,
    ) -> Rpc<GetRegionResponse> {
        let call = self.call("GetRegionByID");
        call.check_header(request.get_ref().header.as_ref())?;
        let id = request.get_ref().region_id;
        call.reply(self.read(|view| Ok(region_response(view.regions().get(id)))))
    }

    #[tracing::instrument(skip_all, fields(limit = request.get_ref().limit))]
    async fn scan_regions(&self, request: Request<ScanRegionsRequest>) -> Rpc<ScanRegionsResponse> {
        let call = self.call("ScanRegions");
        let req = request.into_inner();
        call.check_header(req.header.as_ref())?;
        let limit = req.limit.max(0) as usize;
        let result = self.read(|view| {
            let mut resp = ScanRegionsResponse::default();
            for r in view.regions().scan(&req.start_key, &req.end_key, limit) {
                resp.region_metas.push(r.meta.clone());
                resp.leaders.push(r.leader.unwrap_or_default());
                resp.regions.push(scan_entry(r));
            }
            Ok(resp)
        });
        call.reply(result)
    }

    #[tracing::instrument(skip_all, fields(ranges = request.get_ref().ranges.len()))]
    async fn batch_scan_regions(
        &self,
        request: Request<BatchScanRegionsRequest>,
    ) -> Rpc<BatchScanRegionsResponse> {
        let call = self.call("BatchScanRegions");
        let req = request.into_inner();
        call.check_header(req.header.as_ref())?;
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = req
            .ranges
            .into_iter()
            .map(|r| (r.start_key, r.end_key))
            .collect();
        let limit = req.limit.max(0) as usize;
        let result = self.read(|view| {
            let regions = view
                .regions()
                .batch_scan(&ranges, limit, req.contain_all_key_range)?;
            Ok(BatchScanRegionsResponse {
                regions: regions.into_iter().map(scan_entry).collect(),
                ..Default::default()
            })
        });
        call.reply(result)
    }

    #[tracing::instrument(skip_all, fields(region_id = request.get_ref().region.as_ref().map(|r| r.id)))]
    async fn ask_split(&self, request: Request<AskSplitRequest>) -> Rpc<AskSplitResponse> {
        let call = self.call("AskSplit");
        let req = request.into_inner();
        call.check_header(req.header.as_ref())?;
        let result = split_ids(&self.state, req.region, 1).await.map(|mut ids| {
            let id = ids.remove(0);
            AskSplitResponse {
                new_region_id: id.new_region_id,
                new_peer_ids: id.new_peer_ids,
                ..Default::default()
            }
        });
        call.reply(result)
    }

    #[tracing::instrument(skip_all, fields(
        region_id = request.get_ref().region.as_ref().map(|r| r.id),
        split_count = request.get_ref().split_count,
    ))]
    async fn ask_batch_split(
        &self,
        request: Request<AskBatchSplitRequest>,
    ) -> Rpc<AskBatchSplitResponse> {
        let call = self.call("AskBatchSplit");
        let req = request.into_inner();
        call.check_header(req.header.as_ref())?;
        let result = split_ids(&self.state, req.region, req.split_count).await;
        call.reply(result.map(|ids| AskBatchSplitResponse {
            ids,
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn report_split(&self, request: Request<ReportSplitRequest>) -> Rpc<ReportSplitResponse> {
        let call = self.call("ReportSplit");
        let req = request.into_inner();
        call.check_header(req.header.as_ref())?;
        let regions: Vec<metapb::Region> = req.left.into_iter().chain(req.right).collect();
        let result = apply_split(&self.state, &regions);
        call.reply(result.map(|()| ReportSplitResponse::default()))
    }

    #[tracing::instrument(skip_all, fields(regions = request.get_ref().regions.len()))]
    async fn report_batch_split(
        &self,
        request: Request<ReportBatchSplitRequest>,
    ) -> Rpc<ReportBatchSplitResponse> {
        let call = self.call("ReportBatchSplit");
        let req = request.into_inner();
        call.check_header(req.header.as_ref())?;
        let result = apply_split(&self.state, &req.regions);
        call.reply(result.map(|()| ReportBatchSplitResponse::default()))
    }

    #[tracing::instrument(skip_all)]
    async fn get_cluster_config(
        &self,
        request: Request<GetClusterConfigRequest>,
    ) -> Rpc<GetClusterConfigResponse> {
        let call = self.call("GetClusterConfig");
        call.check_header(request.get_ref().header.as_ref())?;
        call.reply(self.read(|view| {
            Ok(GetClusterConfigResponse {
                cluster: Some(view.meta()?),
                ..Default::default()
            })
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn put_cluster_config(
        &self,
        request: Request<PutClusterConfigRequest>,
    ) -> Rpc<PutClusterConfigResponse> {
        let call = self.call("PutClusterConfig");
        let req = request.into_inner();
        call.check_header(req.header.as_ref())?;
        let cluster = req.cluster.unwrap_or_default();
        let result = self
            .state
            .commit(|view| Ok(((), view.plan_put_cluster(&cluster)?)))
            .await;
        call.reply(result.map(|()| PutClusterConfigResponse::default()))
    }

    #[tracing::instrument(skip_all)]
    async fn get_gc_safe_point(
        &self,
        request: Request<GetGcSafePointRequest>,
    ) -> Rpc<GetGcSafePointResponse> {
        let call = self.call("GetGCSafePoint");
        call.check_header(request.get_ref().header.as_ref())?;
        call.reply(self.read(|view| {
            Ok(GetGcSafePointResponse {
                safe_point: view.safe_points().gc(),
                ..Default::default()
            })
        }))
    }

    #[tracing::instrument(skip_all, fields(safe_point = request.get_ref().safe_point))]
    async fn update_gc_safe_point(
        &self,
        request: Request<UpdateGcSafePointRequest>,
    ) -> Rpc<UpdateGcSafePointResponse> {
        let call = self.call("UpdateGCSafePoint");
        call.check_header(request.get_ref().header.as_ref())?;
        let asked = request.get_ref().safe_point;
        let result = self
            .state
            .commit(|view| {
                view.meta()?;
                let (new, write) = view.safe_points().plan_update_gc(asked);
                Ok((new, write.into_iter().collect()))
            })
            .await;
        call.reply(result.map(|new_safe_point| UpdateGcSafePointResponse {
            new_safe_point,
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all, fields(safe_point = request.get_ref().safe_point, ttl = request.get_ref().ttl))]
    async fn update_service_gc_safe_point(
        &self,
        request: Request<UpdateServiceGcSafePointRequest>,
    ) -> Rpc<UpdateServiceGcSafePointResponse> {
        let call = self.call("UpdateServiceGCSafePoint");
        let req = request.into_inner();
        call.check_header(req.header.as_ref())?;
        let service = String::from_utf8_lossy(&req.service_id).into_owned();
        let now = now_secs();
        let result = if service.is_empty() {
            Err(Error::invalid("service_id must not be empty"))
        } else {
            self.state
                .commit(|view| {
                    view.meta()?;
                    let up = view.safe_points().plan_update_service(
                        &service,
                        req.safe_point,
                        req.ttl,
                        now,
                    );
                    Ok((up.min, up.writes))
                })
                .await
        };
        call.reply(result.map(|min| UpdateServiceGcSafePointResponse {
            service_id: min.service_id.into_bytes(),
            ttl: min.expire_at.saturating_sub(now),
            min_safe_point: min.safe_point,
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all, fields(region_id = request.get_ref().region_id))]
    async fn get_operator(&self, request: Request<GetOperatorRequest>) -> Rpc<GetOperatorResponse> {
        let call = self.call("GetOperator");
        call.check_header(request.get_ref().header.as_ref())?;
        let id = request.get_ref().region_id;
        // The running operator, else the last one that ended (PD keeps their status a while).
        let found =
            self.state
                .scheduler
                .lock()
                .operators
                .latest(id)
                .map(|op| GetOperatorResponse {
                    region_id: id,
                    desc: op.desc.as_bytes().to_vec(),
                    status: op.status.to_pd() as i32,
                    kind: op.kind.to_string().into_bytes(),
                    ..Default::default()
                });
        call.reply(self.read(|_| found.ok_or(Error::RegionNotFound(id))))
    }

    #[tracing::instrument(skip_all, fields(store_id = request.get_ref().store_id))]
    async fn report_min_resolved_ts(
        &self,
        request: Request<ReportMinResolvedTsRequest>,
    ) -> Rpc<ReportMinResolvedTsResponse> {
        let call = self.call("ReportMinResolvedTS");
        call.check_header(request.get_ref().header.as_ref())?;
        call.reply(ok(ReportMinResolvedTsResponse::default()))
    }

    #[tracing::instrument(skip_all)]
    async fn get_min_ts(&self, request: Request<GetMinTsRequest>) -> Rpc<GetMinTsResponse> {
        let call = self.call("GetMinTS");
        call.check_header(request.get_ref().header.as_ref())?;
        // The same guard as the Tso stream: a member without the lease must not answer.
        let ts = match self.state.allocate_timestamps(1).await {
            Err(e @ (Error::NotLeader { .. } | Error::NoTsoLease(_))) => {
                return Err(super::streams::tso_status(e));
            }
            other => other,
        };
        call.reply(ts.map(|ts| GetMinTsResponse {
            timestamp: Some(Timestamp {
                physical: ts.physical,
                logical: ts.logical,
                suffix_bits: 0,
            }),
            ..Default::default()
        }))
    }
}
