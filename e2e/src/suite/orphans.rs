//! Recovery of orphaned locks, which `tikv-client` 0.4.0 cannot do by itself.
//!
//! A transaction whose client dies or gives up after one of its secondary locks landed but
//! before its primary lock did leaves an orphan: a lock whose primary key holds neither a lock
//! nor a commit or rollback record. The store answers `CheckTxnStatus` on that primary as TiKV
//! does, with `TxnNotFound` while `rollback_if_not_exist` is false; client-go and the Java
//! client then wait until the orphan's TTL has passed and ask again with
//! `rollback_if_not_exist`, which writes the rollback record and frees the key. The Rust client
//! 0.4.0 never asks again: it looks for the error in another wrapper than the one its request
//! plan returns (tikv/client-rust#543, fix pending upstream), so every read or write that meets
//! the orphan fails with `TxnNotFound`, for ever.
//!
//! [`recover`] does what the client should, from the outside, for the workloads' keys: given a
//! call that failed on `TxnNotFound`, it finds that transaction's locks and, for those whose
//! TTL has passed (judged on the timestamp oracle's clock, as the clients judge it), rolls the
//! transaction back through `cleanup_locks` (`CheckTxnStatus` with `rollback_if_not_exist`,
//! then `ResolveLock`). A live transaction is left alone: its locks are not expired yet.

use tikv_client::transaction::ResolveLocksOptions;
use tikv_client::{Error, KvPair, Timestamp, TimestampExt, TransactionClient};

use super::clock::{bounded, txn_options, CallError};

/// A timestamp is `physical_ms << 18 | logical`.
const PHYSICAL_SHIFT: u32 = 18;

/// Every workload key starts with `jr-`.
const KEYS: std::ops::Range<&str> = "jr-".."jr.";

/// The start timestamp of the transaction a failed call reports as not found, if it does.
pub fn txn_not_found(error: &Error) -> Option<u64> {
    match error {
        Error::TxnNotFound(t) => Some(t.start_ts),
        Error::KeyError(k) => k.txn_not_found.as_ref().map(|t| t.start_ts),
        Error::MultipleKeyErrors(errors) | Error::ExtractedErrors(errors) => {
            errors.iter().find_map(txn_not_found)
        }
        Error::PessimisticLockError { inner, .. } => txn_not_found(inner),
        _ => None,
    }
}

/// Whether a lock of `ttl_ms` taken at `lock_ts` has expired at `now` (both timestamps from
/// the oracle): its physical part plus the TTL is not in `now`'s future.
pub fn expired(lock_ts: u64, ttl_ms: u64, now: u64) -> bool {
    let physical = |ts: u64| i128::from(ts >> PHYSICAL_SHIFT);
    physical(lock_ts) + i128::from(ttl_ms) <= physical(now)
}

/// When `error` is a `TxnNotFound`, rolls that transaction back if its locks among the
/// workload keys have expired; returns how many locks were resolved (0 when the error is
/// another one, the locks are still live, or the attempt itself failed; the caller retries).
pub async fn recover(client: &TransactionClient, error: &CallError) -> usize {
    let CallError::Client(e) = error else {
        return 0;
    };
    let Some(start_ts) = txn_not_found(e) else {
        return 0;
    };
    match roll_back_expired(client, start_ts).await {
        Ok(0) => 0,
        Ok(n) => {
            tracing::info!(start_ts, locks = n, "rolled back an orphaned transaction");
            n
        }
        Err(e) => {
            tracing::debug!(start_ts, error = %e, "could not roll back an orphaned transaction");
            0
        }
    }
}

/// Reads `keys` in one snapshot at the current timestamp. A read that meets an expired orphan
/// rolls it back ([`recover`]) before failing, so that the caller's next attempt gets through.
pub async fn snapshot_read(
    client: &TransactionClient,
    keys: Vec<String>,
) -> Result<Vec<KvPair>, CallError> {
    let ts = bounded(client.current_timestamp()).await?;
    let mut snapshot = client.snapshot(ts, txn_options(false));
    match bounded(snapshot.batch_get(keys)).await {
        Ok(pairs) => Ok(pairs.collect()),
        Err(e) => {
            recover(client, &e).await;
            Err(e)
        }
    }
}

async fn roll_back_expired(client: &TransactionClient, start_ts: u64) -> Result<usize, CallError> {
    let now = bounded(client.current_timestamp()).await?;
    let locks =
        bounded(client.scan_locks(&now, KEYS.start.to_owned()..KEYS.end.to_owned(), 1024)).await?;
    let mut resolved = 0;
    for lock in locks.iter().filter(|l| l.lock_version == start_ts) {
        if !expired(lock.lock_version, lock.lock_ttl, now.version()) {
            continue;
        }
        let mut end = lock.key.clone();
        end.push(0);
        let range = lock.key.clone()..end;
        let done = bounded(client.cleanup_locks(
            range,
            &Timestamp::from_version(start_ts),
            ResolveLocksOptions::default(),
        ))
        .await?;
        resolved += done.resolved_locks;
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(physical_ms: u64, logical: u64) -> u64 {
        (physical_ms << 18) | logical
    }

    #[test]
    fn a_lock_expires_when_its_ttl_has_passed_on_the_oracle_clock() {
        assert!(!expired(ts(1000, 5), 3000, ts(3999, 0)));
        assert!(expired(ts(1000, 5), 3000, ts(4000, 0)));
        assert!(!expired(ts(1000, 0), u64::MAX, ts(u64::MAX >> 18, 0)));
    }

    #[test]
    fn txn_not_found_is_found_in_every_wrapper_the_client_uses() {
        let key_error = || tikv_client::ProtoKeyError {
            txn_not_found: Some(Default::default()),
            ..Default::default()
        };
        let start_ts = 470_972_904_059_961_345;
        let error = || {
            let mut e = key_error();
            if let Some(t) = e.txn_not_found.as_mut() {
                t.start_ts = start_ts;
            }
            Error::KeyError(Box::new(e))
        };
        assert_eq!(txn_not_found(&error()), Some(start_ts));
        let multiple = Error::MultipleKeyErrors(vec![Error::Unimplemented, error()]);
        assert_eq!(txn_not_found(&multiple), Some(start_ts));
        let extracted = Error::ExtractedErrors(vec![multiple]);
        assert_eq!(txn_not_found(&extracted), Some(start_ts));
        assert_eq!(txn_not_found(&Error::Unimplemented), None);
        let other = Error::KeyError(Box::default());
        assert_eq!(txn_not_found(&other), None);
    }
}
