//! The prewrite command: optimistic and pessimistic, 2PC, async commit, 1PC
//! (TiKV's `commands/prewrite.rs`).
//!
//! Each mutation goes through `prewrite_mutation`. Locks held by other txns
//! are collected and reported together (nothing is written); any other key
//! error stops the command (nothing is written) unless the txn turns out to
//! be committed already, which makes a retried prewrite succeed. With
//! `try_one_pc` the locks become commit records at `one_pc_commit_ts`
//! directly; 1PC is never declined (a client treats 0 as failure) unless the
//! request's own `max_commit_ts` forbids the computed commit ts.

use proto::kvrpcpb::{
    prewrite_request::PessimisticAction, Assertion, AssertionLevel, KeyError, Op, PrewriteRequest,
    PrewriteResponse,
};

use super::error::split;
use super::key_error as ke;
use super::prewrite_mutation::{prewrite_mutation, PrewriteState};
use super::{ConcurrencyManager, Result, WriteOutcome};
use crate::engine::Snapshot;
use crate::mvcc::{MvccReader, MvccTxn, Write, WriteType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitKind {
    TwoPc,
    /// `max_commit_ts` 0 = no bound.
    Async {
        max_commit_ts: u64,
    },
    OnePc {
        max_commit_ts: u64,
    },
}

/// What every mutation of one prewrite shares.
pub(crate) struct TxnProps<'a> {
    pub start_ts: u64,
    pub primary: &'a [u8],
    pub lock_ttl: u64,
    pub txn_size: u64,
    pub min_commit_ts: u64,
    /// Non-zero for a pessimistic txn.
    pub for_update_ts: u64,
    pub skip_constraint_check: bool,
    pub commit_kind: CommitKind,
    pub assertion_level: AssertionLevel,
    /// Stored in the primary lock of an async-commit txn.
    pub secondaries: &'a [Vec<u8>],
    pub is_retry: bool,
}

impl<'a> TxnProps<'a> {
    fn new(req: &'a PrewriteRequest) -> Self {
        let max_commit_ts = req.max_commit_ts;
        let commit_kind = if req.try_one_pc {
            CommitKind::OnePc { max_commit_ts }
        } else if req.use_async_commit {
            CommitKind::Async { max_commit_ts }
        } else {
            CommitKind::TwoPc
        };
        TxnProps {
            start_ts: req.start_version,
            primary: &req.primary_lock,
            lock_ttl: req.lock_ttl,
            txn_size: req.txn_size,
            min_commit_ts: req.min_commit_ts,
            for_update_ts: req.for_update_ts,
            skip_constraint_check: req.skip_constraint_check,
            commit_kind,
            assertion_level: req.assertion_level(),
            secondaries: &req.secondaries,
            is_retry: req.context.as_ref().is_some_and(|c| c.is_retry_request),
        }
    }

    pub fn is_pessimistic(&self) -> bool {
        self.for_update_ts != 0
    }
}

/// One mutation with its pessimistic action.
pub(crate) struct Mutation<'a> {
    pub op: Op,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub assertion: Assertion,
    /// DO_PESSIMISTIC_CHECK: our pessimistic lock must be there.
    pub pessimistic_check: bool,
    /// DO_CONSTRAINT_CHECK: check conflicts / existence although pessimistic.
    pub constraint_check: bool,
    pub expected_for_update_ts: Option<u64>,
}

impl<'a> Mutation<'a> {
    fn from_request(
        req: &'a PrewriteRequest,
        i: usize,
    ) -> std::result::Result<Self, Box<KeyError>> {
        let m = &req.mutations[i];
        let op =
            Op::try_from(m.op).map_err(|_| Box::new(ke::abort(format!("unknown op {}", m.op))))?;
        if matches!(op, Op::Rollback | Op::PessimisticLock) {
            return Err(Box::new(ke::abort(format!(
                "mismatch Op {op:?} in prewrite mutations"
            ))));
        }
        let action = req
            .pessimistic_actions
            .get(i)
            .and_then(|a| PessimisticAction::try_from(*a).ok())
            .unwrap_or(PessimisticAction::SkipPessimisticCheck);
        let expected_for_update_ts = req
            .for_update_ts_constraints
            .iter()
            .find(|c| c.index as usize == i)
            .map(|c| c.expected_for_update_ts);
        Ok(Mutation {
            op,
            key: &m.key,
            value: &m.value,
            assertion: m.assertion(),
            pessimistic_check: action == PessimisticAction::DoPessimisticCheck,
            constraint_check: action == PessimisticAction::DoConstraintCheck,
            expected_for_update_ts,
        })
    }
}

pub fn prewrite(
    snap: &Snapshot<'_>,
    cm: &ConcurrencyManager,
    req: &PrewriteRequest,
) -> Result<WriteOutcome<PrewriteResponse>> {
    let props = TxnProps::new(req);
    let reader = MvccReader::new(snap);
    let mut st = PrewriteState::default();
    let mut locked = Vec::new();
    let mut final_ts = 0;
    for i in 0..req.mutations.len() {
        let m = match Mutation::from_request(req, i) {
            Ok(m) => m,
            Err(e) => return Ok(failed(vec![*e])),
        };
        if let Some(commit_ts) = committed_on_retry(&reader, &props, &m)? {
            return Ok(already_committed(&props, commit_ts));
        }
        match split(prewrite_mutation(&mut st, &reader, cm, &props, &m))? {
            Ok(ts) => final_ts = final_ts.max(ts),
            Err(e) if e.locked.is_some() => locked.push(e),
            Err(e) => return on_key_error(&reader, &props, &m, e),
        }
    }
    if !locked.is_empty() {
        return Ok(failed(locked));
    }
    Ok(finish(st, &props, final_ts))
}

fn failed(errors: Vec<KeyError>) -> WriteOutcome<PrewriteResponse> {
    WriteOutcome::response_only(PrewriteResponse {
        errors,
        ..Default::default()
    })
}

/// A retried prewrite of a pessimistic async-commit txn must not lock again
/// keys of a txn that was already committed (TiKV does the same check).
fn committed_on_retry(
    reader: &MvccReader<'_, '_>,
    props: &TxnProps<'_>,
    m: &Mutation<'_>,
) -> Result<Option<u64>> {
    if !(props.is_pessimistic()
        && !m.pessimistic_check
        && props.is_retry
        && matches!(props.commit_kind, CommitKind::Async { .. }))
    {
        return Ok(None);
    }
    Ok(reader
        .txn_commit_record(m.key, props.start_ts)?
        .committed_ts())
}

/// A conflict may just mean this very txn was prewritten and committed
/// before (a retry whose first response was lost): then report success.
fn on_key_error(
    reader: &MvccReader<'_, '_>,
    props: &TxnProps<'_>,
    m: &Mutation<'_>,
    e: KeyError,
) -> Result<WriteOutcome<PrewriteResponse>> {
    if e.conflict.is_some() || e.abort.starts_with("PessimisticLockNotFound") {
        if let Some(commit_ts) = reader
            .txn_commit_record(m.key, props.start_ts)?
            .committed_ts()
        {
            return Ok(already_committed(props, commit_ts));
        }
    }
    Ok(failed(vec![e]))
}

fn already_committed(props: &TxnProps<'_>, commit_ts: u64) -> WriteOutcome<PrewriteResponse> {
    let one_pc = matches!(props.commit_kind, CommitKind::OnePc { .. });
    WriteOutcome::response_only(PrewriteResponse {
        min_commit_ts: commit_ts,
        one_pc_commit_ts: if one_pc { commit_ts } else { 0 },
        ..Default::default()
    })
}

fn finish(
    mut st: PrewriteState,
    props: &TxnProps<'_>,
    final_ts: u64,
) -> WriteOutcome<PrewriteResponse> {
    let kind = if st.fallback {
        CommitKind::TwoPc
    } else {
        props.commit_kind
    };
    let mut resp = PrewriteResponse::default();
    match kind {
        CommitKind::OnePc { .. } => {
            commit_one_pc(&mut st.txn, &st.one_pc_locks, props.start_ts, final_ts);
            resp.min_commit_ts = final_ts;
            resp.one_pc_commit_ts = final_ts;
        }
        CommitKind::Async { .. } => resp.min_commit_ts = final_ts,
        CommitKind::TwoPc => {
            // After a fallback, queued 1PC locks become ordinary locks.
            for (key, lock, _) in &st.one_pc_locks {
                st.txn.put_lock(key, lock);
            }
        }
    }
    WriteOutcome {
        modifies: st.txn.into_modifies(),
        response: resp,
        guards: st.guards,
    }
}

fn commit_one_pc(
    txn: &mut MvccTxn,
    locks: &[(Vec<u8>, crate::mvcc::Lock, bool)],
    start_ts: u64,
    commit_ts: u64,
) {
    for (key, lock, replaces_pessimistic) in locks {
        let write = Write::new(
            WriteType::from_lock_type(lock.lock_type),
            start_ts,
            lock.short_value.clone(),
        );
        txn.put_write(key, commit_ts, &write);
        if *replaces_pessimistic {
            txn.unlock_key(key);
        }
    }
}
