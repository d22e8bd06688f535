//! Folding storage errors into the response fields the clients read.
//!
//! Region errors go to `region_error` (the client retries); bad input goes to
//! the response's `error` string (raw) or `KeyError.abort` (transactional);
//! where a response has neither, to a gRPC `InvalidArgument` status.

use proto::{errorpb, kvrpcpb};
use tonic::Status;

use crate::storage::Error;

pub trait ErrorResponse: Default {
    fn set_region_error(&mut self, e: errorpb::Error);
    /// Puts a bad-input message in the response; false if it has no field for it.
    fn set_invalid(&mut self, msg: String) -> bool;
    /// Puts a key error in the response; false if it has no field for one.
    fn set_key_error(&mut self, _e: kvrpcpb::KeyError) -> bool {
        false
    }
}

fn abort(msg: String) -> kvrpcpb::KeyError {
    kvrpcpb::KeyError {
        abort: msg,
        ..Default::default()
    }
}

macro_rules! impl_error_response {
    (string: $($t:ident),*) => {$(
        impl ErrorResponse for kvrpcpb::$t {
            fn set_region_error(&mut self, e: errorpb::Error) { self.region_error = Some(e); }
            fn set_invalid(&mut self, msg: String) -> bool { self.error = msg; true }
        }
    )*};
    (key_error: $($t:ident),*) => {$(
        impl ErrorResponse for kvrpcpb::$t {
            fn set_region_error(&mut self, e: errorpb::Error) { self.region_error = Some(e); }
            fn set_invalid(&mut self, msg: String) -> bool { self.error = Some(abort(msg)); true }
            fn set_key_error(&mut self, e: kvrpcpb::KeyError) -> bool { self.error = Some(e); true }
        }
    )*};
    (key_errors: $($t:ident),*) => {$(
        impl ErrorResponse for kvrpcpb::$t {
            fn set_region_error(&mut self, e: errorpb::Error) { self.region_error = Some(e); }
            fn set_invalid(&mut self, msg: String) -> bool { self.errors = vec![abort(msg)]; true }
            fn set_key_error(&mut self, e: kvrpcpb::KeyError) -> bool { self.errors = vec![e]; true }
        }
    )*};
    (none: $($t:ident),*) => {$(
        impl ErrorResponse for kvrpcpb::$t {
            fn set_region_error(&mut self, e: errorpb::Error) { self.region_error = Some(e); }
            fn set_invalid(&mut self, _msg: String) -> bool { false }
        }
    )*};
}

impl_error_response!(string: RawGetResponse, RawPutResponse, RawBatchPutResponse, RawDeleteResponse,
    RawBatchDeleteResponse, RawDeleteRangeResponse, RawGetKeyTtlResponse, RawCasResponse,
    DeleteRangeResponse, UnsafeDestroyRangeResponse, RawCoprocessorResponse);
impl_error_response!(key_error: GetResponse, ScanResponse, BatchGetResponse, CommitResponse,
    CleanupResponse, BatchRollbackResponse, ScanLockResponse, ResolveLockResponse, GcResponse,
    TxnHeartBeatResponse, CheckTxnStatusResponse, CheckSecondaryLocksResponse);
impl_error_response!(key_errors: PrewriteResponse, PessimisticLockResponse, PessimisticRollbackResponse);
impl_error_response!(none: RawBatchGetResponse, RawScanResponse, RawBatchScanResponse);

/// The response to send for a storage result, or the gRPC status to fail with.
pub fn respond<R: ErrorResponse>(result: Result<R, Error>) -> Result<R, Status> {
    match result {
        Ok(r) => Ok(r),
        Err(Error::Region(e)) => {
            let mut r = R::default();
            r.set_region_error(*e);
            Ok(r)
        }
        Err(Error::Invalid(e)) => invalid(e.to_string()),
        Err(Error::Locked(lock)) => {
            let mut r = R::default();
            let e = kvrpcpb::KeyError {
                locked: Some(*lock),
                ..Default::default()
            };
            if r.set_key_error(e) {
                Ok(r)
            } else {
                Err(Status::internal(
                    "a lock answered a request without a key error field",
                ))
            }
        }
        Err(Error::Txn(e @ crate::percolator::TxnError::ResponseTooLarge { .. })) => {
            invalid(e.to_string())
        }
        Err(Error::Unavailable) => Err(Status::unavailable("store is shutting down")),
        Err(e) => {
            tracing::error!(error = %e, "request failed");
            Err(Status::internal(e.to_string()))
        }
    }
}

/// A bad-input answer: in the response's error field, else as a status.
fn invalid<R: ErrorResponse>(msg: String) -> Result<R, Status> {
    let mut r = R::default();
    if r.set_invalid(msg.clone()) {
        Ok(r)
    } else {
        Err(Status::invalid_argument(msg))
    }
}
