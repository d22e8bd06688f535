//! The etcd v3 subset client-go uses on the PD port: `Cluster/MemberList` (clientv3's endpoint
//! sync, at connect and every 30 s) and `KV/Range` of the GC safe point key
//! `/tidb/store/gcworker/saved_safe_point`, whose value is the safe point in decimal. Nothing
//! else is stored in this "etcd"; every other key reads as absent.

use std::sync::Arc;

use proto::etcdserverpb::cluster_server::Cluster;
use proto::etcdserverpb::kv_server::Kv;
use proto::etcdserverpb::{
    Member, MemberListRequest, MemberListResponse, RangeRequest, RangeResponse, ResponseHeader,
};
use proto::mvccpb::KeyValue;
use tonic::{Request, Response, Status};

use crate::state::Placement;

/// The key TiDB's GC worker saves the GC safe point under.
pub const GC_SAFE_POINT_KEY: &[u8] = b"/tidb/store/gcworker/saved_safe_point";

/// The etcd `KV` and `Cluster` services.
#[derive(Clone)]
pub struct EtcdService {
    state: Arc<Placement>,
}

impl EtcdService {
    pub fn new(state: Arc<Placement>) -> Self {
        EtcdService { state }
    }

    fn header(&self) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.state.cluster_id,
            member_id: self.state.member_id,
            revision: self.state.revision(),
            raft_term: 1,
        }
    }
}

/// Whether etcd's range `[key, range_end)` selects `target` (empty end: `key` alone;
/// `"\0"`: everything from `key` on).
pub fn range_selects(key: &[u8], range_end: &[u8], target: &[u8]) -> bool {
    match range_end {
        [] => key == target,
        [0] => target >= key,
        end => target >= key && target < end,
    }
}

#[tonic::async_trait]
impl Kv for EtcdService {
    #[tracing::instrument(skip_all, fields(key = %String::from_utf8_lossy(&request.get_ref().key)))]
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let start = std::time::Instant::now();
        let req = request.into_inner();
        let safe_point = self.state.view().safe_points().gc();
        let mut kvs = Vec::new();
        if safe_point > 0 && range_selects(&req.key, &req.range_end, GC_SAFE_POINT_KEY) {
            let revision = self.state.revision();
            kvs.push(KeyValue {
                key: GC_SAFE_POINT_KEY.to_vec(),
                create_revision: 1,
                mod_revision: revision,
                version: 1,
                value: if req.keys_only {
                    Vec::new()
                } else {
                    safe_point.to_string().into_bytes()
                },
                lease: 0,
            });
        }
        let count = kvs.len() as i64;
        if req.count_only {
            kvs.clear();
        }
        self.state
            .metrics
            .observe_rpc("etcd.Range", "ok", start.elapsed());
        Ok(Response::new(RangeResponse {
            header: Some(self.header()),
            kvs,
            more: false,
            count,
        }))
    }
}

#[tonic::async_trait]
impl Cluster for EtcdService {
    #[tracing::instrument(skip_all)]
    async fn member_list(
        &self,
        _request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let start = std::time::Instant::now();
        let members = self
            .state
            .members()
            .into_iter()
            .map(|m| Member {
                id: m.member_id,
                name: m.name,
                peer_ur_ls: m.peer_urls,
                client_ur_ls: m.client_urls,
                is_learner: false,
            })
            .collect();
        self.state
            .metrics
            .observe_rpc("etcd.MemberList", "ok", start.elapsed());
        Ok(Response::new(MemberListResponse {
            header: Some(self.header()),
            members,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::range_selects;

    #[test]
    fn etcd_range_semantics() {
        let k = b"/tidb/store/gcworker/saved_safe_point";
        assert!(range_selects(k, b"", k));
        assert!(!range_selects(b"/tidb/store", b"", k));
        assert!(range_selects(b"/tidb/", b"\0", k));
        assert!(range_selects(b"/tidb/", b"/tidb0", k));
        assert!(!range_selects(b"/tidc", b"\0", k));
        assert!(!range_selects(b"/a", b"/b", k));
    }
}
