//! [`TestPd`]: the `pdpb.PD` client the tests talk through. Each unary call fills the request
//! header with the cluster id; `must_*` panics naming the RPC on a gRPC error, asserts the
//! response header is OK and returns the typed payload, while the plain form returns the
//! whole response (or the status) for tests that look at errors. The two streams (Tso,
//! RegionHeartbeat) stay hand-written over [`TestPd::raw`].

use placement::RunningServer;
use proto::metapb;
use proto::pdpb::{self, pd_client::PdClient, RequestHeader, ResponseHeader};
use tonic::transport::Channel;
use tonic::{Response, Status};

use super::{assert_ok_header, header, must_pd_client, peer, region, store};

/// A unary PD response: it carries a header.
pub trait PdResponse {
    fn response_header(&self) -> &Option<ResponseHeader>;
}

macro_rules! pd_responses {
    ($($name:ident),* $(,)?) => {
        $(impl PdResponse for pdpb::$name {
            fn response_header(&self) -> &Option<ResponseHeader> {
                &self.header
            }
        })*
    };
}

pd_responses!(
    AllocIdResponse,
    AskBatchSplitResponse,
    AskSplitResponse,
    BatchScanRegionsResponse,
    BootstrapResponse,
    GetAllStoresResponse,
    GetClusterConfigResponse,
    GetClusterInfoResponse,
    GetGcSafePointResponse,
    GetMembersResponse,
    GetOperatorResponse,
    GetRegionResponse,
    GetStoreResponse,
    IsBootstrappedResponse,
    PutClusterConfigResponse,
    PutStoreResponse,
    ReportBatchSplitResponse,
    ScanRegionsResponse,
    StoreHeartbeatResponse,
    UpdateGcSafePointResponse,
    UpdateServiceGcSafePointResponse,
);

/// The response of a call, or the status it failed with.
pub type Reply<T> = Result<T, Status>;

fn payload<T>(reply: Result<Response<T>, Status>) -> Reply<T> {
    reply.map(Response::into_inner)
}

/// A PD client bound to one cluster id.
pub struct TestPd {
    client: PdClient<Channel>,
    cluster_id: u64,
}

impl TestPd {
    /// Connects to `server`, sending its cluster id.
    pub async fn connect(server: &RunningServer) -> TestPd {
        TestPd::new(must_pd_client(server).await, server.cluster_id())
    }

    /// Wraps a connected client that sends `cluster_id`.
    pub fn new(client: PdClient<Channel>, cluster_id: u64) -> TestPd {
        TestPd { client, cluster_id }
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The generated client, for the streams and hand-made requests.
    pub fn raw(&mut self) -> &mut PdClient<Channel> {
        &mut self.client
    }

    fn header(&self) -> Option<RequestHeader> {
        header(self.cluster_id)
    }

    /// The response of `rpc`; panics on a gRPC error or an error header.
    fn must<T: PdResponse>(&self, rpc: &str, reply: Reply<T>) -> T {
        let resp = reply.unwrap_or_else(|status| panic!("{rpc} failed: {status}"));
        assert_ok_header(resp.response_header(), self.cluster_id);
        resp
    }

    /// One timestamp over a fresh Tso stream (see [`super::tso`]).
    pub async fn tso(&mut self) -> Result<u64, Status> {
        super::tso(&mut self.client, self.cluster_id).await
    }

    /// GetMembers, which needs no header (none is sent).
    pub async fn get_members(&mut self) -> Reply<pdpb::GetMembersResponse> {
        let req = pdpb::GetMembersRequest::default();
        payload(self.client.get_members(req).await)
    }

    pub async fn must_get_members(&mut self) -> pdpb::GetMembersResponse {
        let reply = self.get_members().await;
        self.must("GetMembers", reply)
    }

    /// GetClusterInfo, which needs no header (none is sent).
    pub async fn must_get_cluster_info(&mut self) -> pdpb::GetClusterInfoResponse {
        let req = pdpb::GetClusterInfoRequest { header: None };
        let reply = payload(self.client.get_cluster_info(req).await);
        self.must("GetClusterInfo", reply)
    }

    pub async fn alloc_id(&mut self) -> Reply<pdpb::AllocIdResponse> {
        let req = pdpb::AllocIdRequest {
            header: self.header(),
        };
        payload(self.client.alloc_id(req).await)
    }

    pub async fn must_alloc_id(&mut self) -> u64 {
        let reply = self.alloc_id().await;
        self.must("AllocID", reply).id
    }

    pub async fn bootstrap(
        &mut self,
        store: metapb::Store,
        region: metapb::Region,
    ) -> Reply<pdpb::BootstrapResponse> {
        let req = pdpb::BootstrapRequest {
            header: self.header(),
            store: Some(store),
            region: Some(region),
        };
        payload(self.client.bootstrap(req).await)
    }

    pub async fn must_bootstrap(&mut self, store: metapb::Store, region: metapb::Region) {
        let reply = self.bootstrap(store, region).await;
        self.must("Bootstrap", reply);
    }

    /// Bootstraps like a store would: allocates ids, bootstraps store 1 with one region over
    /// all keys. Returns (store id, region id, peer id).
    pub async fn must_bootstrap_cluster(&mut self) -> (u64, u64, u64) {
        let store_id = self.must_alloc_id().await;
        let region_id = self.must_alloc_id().await;
        let peer_id = self.must_alloc_id().await;
        let first = region(region_id, b"", b"", 1, &[peer(peer_id, store_id)]);
        self.must_bootstrap(store(store_id), first).await;
        (store_id, region_id, peer_id)
    }

    pub async fn must_is_bootstrapped(&mut self) -> bool {
        let req = pdpb::IsBootstrappedRequest {
            header: self.header(),
        };
        let reply = payload(self.client.is_bootstrapped(req).await);
        self.must("IsBootstrapped", reply).bootstrapped
    }

    pub async fn put_store(&mut self, store: metapb::Store) -> Reply<pdpb::PutStoreResponse> {
        let req = pdpb::PutStoreRequest {
            header: self.header(),
            store: Some(store),
        };
        payload(self.client.put_store(req).await)
    }

    pub async fn must_put_store(&mut self, store: metapb::Store) {
        let reply = self.put_store(store).await;
        self.must("PutStore", reply);
    }

    pub async fn get_store(&mut self, store_id: u64) -> Reply<pdpb::GetStoreResponse> {
        let req = pdpb::GetStoreRequest {
            header: self.header(),
            store_id,
        };
        payload(self.client.get_store(req).await)
    }

    pub async fn must_get_store(&mut self, store_id: u64) -> metapb::Store {
        let reply = self.get_store(store_id).await;
        let resp = self.must("GetStore", reply);
        resp.store.expect("GetStore answers a store")
    }

    pub async fn get_all_stores(
        &mut self,
        exclude_tombstone_stores: bool,
    ) -> Reply<pdpb::GetAllStoresResponse> {
        let req = pdpb::GetAllStoresRequest {
            header: self.header(),
            exclude_tombstone_stores,
        };
        payload(self.client.get_all_stores(req).await)
    }

    pub async fn must_get_all_stores(
        &mut self,
        exclude_tombstone_stores: bool,
    ) -> Vec<metapb::Store> {
        let reply = self.get_all_stores(exclude_tombstone_stores).await;
        self.must("GetAllStores", reply).stores
    }

    pub async fn store_heartbeat(
        &mut self,
        stats: pdpb::StoreStats,
    ) -> Reply<pdpb::StoreHeartbeatResponse> {
        let req = pdpb::StoreHeartbeatRequest {
            header: self.header(),
            stats: Some(stats),
        };
        payload(self.client.store_heartbeat(req).await)
    }

    pub async fn must_store_heartbeat(&mut self, stats: pdpb::StoreStats) {
        let reply = self.store_heartbeat(stats).await;
        self.must("StoreHeartbeat", reply);
    }

    pub async fn get_region(&mut self, key: &[u8]) -> Reply<pdpb::GetRegionResponse> {
        let req = pdpb::GetRegionRequest {
            header: self.header(),
            region_key: key.to_vec(),
            need_buckets: false,
        };
        payload(self.client.get_region(req).await)
    }

    /// The region holding `key` and its leader.
    pub async fn must_get_region(
        &mut self,
        key: &[u8],
    ) -> (Option<metapb::Region>, Option<metapb::Peer>) {
        let reply = self.get_region(key).await;
        let resp = self.must("GetRegion", reply);
        (resp.region, resp.leader)
    }

    /// The region before the one holding `key`, and its leader.
    pub async fn must_get_prev_region(
        &mut self,
        key: &[u8],
    ) -> (Option<metapb::Region>, Option<metapb::Peer>) {
        let req = pdpb::GetRegionRequest {
            header: self.header(),
            region_key: key.to_vec(),
            need_buckets: false,
        };
        let reply = payload(self.client.get_prev_region(req).await);
        let resp = self.must("GetPrevRegion", reply);
        (resp.region, resp.leader)
    }

    /// Region `region_id` (None if unknown) and its leader.
    pub async fn must_get_region_by_id(
        &mut self,
        region_id: u64,
    ) -> (Option<metapb::Region>, Option<metapb::Peer>) {
        let req = pdpb::GetRegionByIdRequest {
            header: self.header(),
            region_id,
            need_buckets: false,
        };
        let reply = payload(self.client.get_region_by_id(req).await);
        let resp = self.must("GetRegionByID", reply);
        (resp.region, resp.leader)
    }

    pub async fn must_scan_regions(
        &mut self,
        start_key: &[u8],
        end_key: &[u8],
        limit: i32,
    ) -> pdpb::ScanRegionsResponse {
        let req = pdpb::ScanRegionsRequest {
            header: self.header(),
            start_key: start_key.to_vec(),
            limit,
            end_key: end_key.to_vec(),
        };
        let reply = payload(self.client.scan_regions(req).await);
        self.must("ScanRegions", reply)
    }

    pub async fn must_batch_scan_regions(
        &mut self,
        ranges: Vec<pdpb::KeyRange>,
        limit: i32,
        contain_all_key_range: bool,
    ) -> Vec<pdpb::Region> {
        let req = pdpb::BatchScanRegionsRequest {
            header: self.header(),
            need_buckets: false,
            ranges,
            limit,
            contain_all_key_range,
        };
        let reply = payload(self.client.batch_scan_regions(req).await);
        self.must("BatchScanRegions", reply).regions
    }

    pub async fn must_ask_split(&mut self, region: metapb::Region) -> pdpb::AskSplitResponse {
        let req = pdpb::AskSplitRequest {
            header: self.header(),
            region: Some(region),
        };
        let reply = payload(self.client.ask_split(req).await);
        self.must("AskSplit", reply)
    }

    /// New region and peer ids for splitting `region` into `split_count + 1`.
    pub async fn must_ask_batch_split(
        &mut self,
        region: metapb::Region,
        split_count: u32,
    ) -> Vec<pdpb::SplitId> {
        let req = pdpb::AskBatchSplitRequest {
            header: self.header(),
            region: Some(region),
            split_count,
        };
        let reply = payload(self.client.ask_batch_split(req).await);
        self.must("AskBatchSplit", reply).ids
    }

    pub async fn must_report_batch_split(&mut self, regions: Vec<metapb::Region>) {
        let req = pdpb::ReportBatchSplitRequest {
            header: self.header(),
            regions,
        };
        let reply = payload(self.client.report_batch_split(req).await);
        self.must("ReportBatchSplit", reply);
    }

    pub async fn must_get_cluster_config(&mut self) -> metapb::Cluster {
        let req = pdpb::GetClusterConfigRequest {
            header: self.header(),
        };
        let reply = payload(self.client.get_cluster_config(req).await);
        let resp = self.must("GetClusterConfig", reply);
        resp.cluster.expect("GetClusterConfig answers a cluster")
    }

    pub async fn must_put_cluster_config(&mut self, cluster: metapb::Cluster) {
        let req = pdpb::PutClusterConfigRequest {
            header: self.header(),
            cluster: Some(cluster),
        };
        let reply = payload(self.client.put_cluster_config(req).await);
        self.must("PutClusterConfig", reply);
    }

    pub async fn must_get_gc_safe_point(&mut self) -> u64 {
        let req = pdpb::GetGcSafePointRequest {
            header: self.header(),
        };
        let reply = payload(self.client.get_gc_safe_point(req).await);
        self.must("GetGCSafePoint", reply).safe_point
    }

    /// Asks for `safe_point`; returns the safe point placement keeps.
    pub async fn must_update_gc_safe_point(&mut self, safe_point: u64) -> u64 {
        let req = pdpb::UpdateGcSafePointRequest {
            header: self.header(),
            safe_point,
        };
        let reply = payload(self.client.update_gc_safe_point(req).await);
        self.must("UpdateGCSafePoint", reply).new_safe_point
    }

    pub async fn must_update_service_gc_safe_point(
        &mut self,
        service_id: &[u8],
        ttl: i64,
        safe_point: u64,
    ) -> pdpb::UpdateServiceGcSafePointResponse {
        let req = pdpb::UpdateServiceGcSafePointRequest {
            header: self.header(),
            service_id: service_id.to_vec(),
            ttl,
            safe_point,
        };
        let reply = payload(self.client.update_service_gc_safe_point(req).await);
        self.must("UpdateServiceGCSafePoint", reply)
    }

    pub async fn must_get_operator(&mut self, region_id: u64) -> pdpb::GetOperatorResponse {
        let req = pdpb::GetOperatorRequest {
            header: self.header(),
            region_id,
        };
        let reply = payload(self.client.get_operator(req).await);
        self.must("GetOperator", reply)
    }
}
