//! gRPC front ends: `pdpb.PD` ([`pd`], with its streams in [`streams`], region helpers in
//! [`region_ops`] and the scheduler's shell in [`scheduling`]), `keyspacepb.Keyspace` ([`keyspace`]) and the etcd v3 subset client-go uses
//! ([`etcd`]).
//!
//! Handlers are thin: check the request header, call the cluster core, wrap the answer. Errors
//! become what PD answers: a `ResponseHeader.error` of the matching `pdpb.ErrorType`
//! ([`error_header`]), except a wrong `cluster_id`, which PD rejects with gRPC
//! `FailedPrecondition` ([`Call::check_header`]). Every response carries a header.

pub mod etcd;
pub mod keyspace;
pub mod pd;
pub mod region_ops;
pub mod scheduling;
pub mod streams;

use std::time::Instant;

use proto::pdpb::{self, ErrorType, RequestHeader, ResponseHeader};
use tonic::{Response, Status};

use crate::error::Error;
use crate::state::Placement;

/// The `pdpb.ErrorType` PD uses for each error.
pub fn error_type(e: &Error) -> ErrorType {
    match e {
        Error::NotBootstrapped => ErrorType::NotBootstrapped,
        Error::AlreadyBootstrapped => ErrorType::AlreadyBootstrapped,
        Error::StoreTombstone(_) => ErrorType::StoreTombstone,
        Error::RegionNotFound(_) => ErrorType::RegionNotFound,
        Error::RegionsNotContainAllKeyRange(_) => ErrorType::RegionsNotContainAllKeyRange,
        Error::KeyspaceNotFound(_) => ErrorType::EntryNotFound,
        Error::KeyspaceExists(_) => ErrorType::DuplicatedEntry,
        _ => ErrorType::Unknown,
    }
}

/// A success header.
pub fn ok_header(cluster_id: u64) -> ResponseHeader {
    ResponseHeader {
        cluster_id,
        error: None,
    }
}

/// A header carrying `e`.
pub fn error_header(cluster_id: u64, e: &Error) -> ResponseHeader {
    typed_error_header(cluster_id, error_type(e), e.to_string())
}

/// A header carrying an error of an explicit type.
pub fn typed_error_header(cluster_id: u64, ty: ErrorType, message: String) -> ResponseHeader {
    ResponseHeader {
        cluster_id,
        error: Some(pdpb::Error {
            r#type: ty as i32,
            message,
        }),
    }
}

/// Responses that carry a `pdpb.ResponseHeader`.
pub trait WithHeader: Default {
    fn set_header(&mut self, header: ResponseHeader);
}

macro_rules! with_header {
    ($($t:ty),* $(,)?) => {
        $(impl WithHeader for $t {
            fn set_header(&mut self, header: ResponseHeader) {
                self.header = Some(header);
            }
        })*
    };
}

with_header!(
    pdpb::GetMembersResponse,
    pdpb::GetClusterInfoResponse,
    pdpb::BootstrapResponse,
    pdpb::IsBootstrappedResponse,
    pdpb::AllocIdResponse,
    pdpb::GetStoreResponse,
    pdpb::PutStoreResponse,
    pdpb::GetAllStoresResponse,
    pdpb::StoreHeartbeatResponse,
    pdpb::GetRegionResponse,
    pdpb::ScanRegionsResponse,
    pdpb::BatchScanRegionsResponse,
    pdpb::AskSplitResponse,
    pdpb::ReportSplitResponse,
    pdpb::AskBatchSplitResponse,
    pdpb::ReportBatchSplitResponse,
    pdpb::GetClusterConfigResponse,
    pdpb::PutClusterConfigResponse,
    pdpb::GetGcSafePointResponse,
    pdpb::UpdateGcSafePointResponse,
    pdpb::UpdateServiceGcSafePointResponse,
    pdpb::GetOperatorResponse,
    pdpb::ReportMinResolvedTsResponse,
    pdpb::GetMinTsResponse,
    proto::keyspacepb::LoadKeyspaceResponse,
    proto::keyspacepb::GetAllKeyspacesResponse,
);

/// One RPC in flight: checks the header, records metrics and builds the response.
pub struct Call<'a> {
    state: &'a Placement,
    method: &'static str,
    start: Instant,
}

impl<'a> Call<'a> {
    pub fn new(state: &'a Placement, method: &'static str) -> Self {
        Call {
            state,
            method,
            start: Instant::now(),
        }
    }

    /// Rejects a request for another cluster the way PD does.
    pub fn check_header(&self, header: Option<&RequestHeader>) -> Result<(), Status> {
        check_cluster_id(self.state.cluster_id, header).inspect_err(|_| {
            self.observe("cluster_mismatch");
        })
    }

    /// Sets the header (success or the error's) and records the outcome.
    pub fn reply<T: WithHeader>(self, result: crate::Result<T>) -> Result<Response<T>, Status> {
        let cluster_id = self.state.cluster_id;
        let (mut resp, header) = match result {
            Ok(resp) => (resp, ok_header(cluster_id)),
            Err(e) => {
                tracing::debug!(method = self.method, error = %e, "request answered with error");
                (T::default(), error_header(cluster_id, &e))
            }
        };
        let outcome = header
            .error
            .as_ref()
            .map(|e| e.r#type().as_str_name())
            .unwrap_or("ok");
        self.observe(outcome);
        resp.set_header(header);
        Ok(Response::new(resp))
    }

    fn observe(&self, outcome: &str) {
        self.state
            .metrics
            .observe_rpc(self.method, outcome, self.start.elapsed());
    }
}

/// `FailedPrecondition` unless `header.cluster_id` is this cluster's.
pub fn check_cluster_id(cluster_id: u64, header: Option<&RequestHeader>) -> Result<(), Status> {
    let got = header.map_or(0, |h| h.cluster_id);
    if got == cluster_id {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "mismatch cluster id, need {cluster_id} but got {got}"
        )))
    }
}
