//! Prewrite of one mutation (TiKV's `actions/prewrite.rs`).
//!
//! Checks the key's lock (another txn's lock: `locked`; our own prewrite lock:
//! a duplicate; our own pessimistic lock: overwritten), the newest commit
//! record (write conflict, rolled back, already exists), assertions, and then
//! writes the lock (value inlined when short). Async-commit and 1PC locks get
//! their `min_commit_ts` from the [`ConcurrencyManager`] and are published in
//! its memory table.

use proto::kvrpcpb::{write_conflict::Reason, Assertion, AssertionLevel, Op};

use super::concurrency_manager::{ConcurrencyManager, KeyHandleGuard};
use super::error::ActionResult;
use super::key_error::{self as ke, AssertionFailure, Conflict};
use super::prewrite::{CommitKind, Mutation, TxnProps};
use crate::mvcc::write::is_short_value;
use crate::mvcc::{Lock, LockType, MvccReader, MvccTxn, Write, WriteType};

/// The state one prewrite command accumulates over its mutations.
#[derive(Default)]
pub(crate) struct PrewriteState {
    pub txn: MvccTxn,
    pub guards: Vec<KeyHandleGuard>,
    /// 1PC: locks to turn into commit records at the end, and whether each
    /// replaces a pessimistic lock.
    pub one_pc_locks: Vec<(Vec<u8>, Lock, bool)>,
    /// An async-commit / 1PC key exceeded `max_commit_ts`: fall back to 2PC.
    pub fallback: bool,
}

enum LockStatus {
    /// Our own prewrite lock is already there; its min_commit_ts if async.
    Locked(u64),
    /// Our own pessimistic lock, to be replaced.
    Pessimistic,
    None,
}

/// Prewrites `m`; returns its contribution to the txn's min_commit_ts (0 for
/// plain 2PC).
pub(crate) fn prewrite_mutation(
    st: &mut PrewriteState,
    reader: &MvccReader<'_, '_>,
    cm: &ConcurrencyManager,
    props: &TxnProps<'_>,
    m: &Mutation<'_>,
) -> ActionResult<u64> {
    let should_not_write = m.op == Op::CheckNotExists;
    if props.is_pessimistic() && should_not_write {
        return Err(
            ke::abort("cannot handle checkNotExists in pessimistic prewrite".into()).into(),
        );
    }
    if m.should_not_exist() {
        cm.update_max_ts(props.start_ts);
    }
    let mut lock_ttl = props.lock_ttl;
    let mut min_commit_ts = props.min_commit_ts;
    let mut lock_amended = false;
    let status = match reader.load_lock(m.key)? {
        Some(lock) => check_lock(props, m, lock, &mut lock_ttl, &mut min_commit_ts)?,
        None if m.pessimistic_check => {
            amend_pessimistic_lock(reader, props, m)?;
            lock_amended = true;
            LockStatus::None
        }
        None => LockStatus::None,
    };
    if let LockStatus::Locked(ts) = status {
        return Ok(ts);
    }
    let prev_write = if skip_constraint_check(props, m) {
        None
    } else {
        Some(check_for_newer_version(reader, props, m)?)
    };
    if !lock_amended {
        check_assertion(reader, props, m, prev_write.as_ref())?;
    }
    if should_not_write {
        cm.update_max_ts(props.start_ts);
        return Ok(match props.commit_kind {
            CommitKind::TwoPc => 0,
            _ => props.min_commit_ts.max(props.start_ts.saturating_add(1)),
        });
    }
    let mut lock = Lock::new(
        m.lock_type(),
        props.primary.to_vec(),
        props.start_ts,
        lock_ttl,
    );
    lock.for_update_ts = props.for_update_ts;
    lock.txn_size = props.txn_size;
    lock.min_commit_ts = min_commit_ts;
    Ok(write_lock(
        st,
        cm,
        props,
        m,
        lock,
        matches!(status, LockStatus::Pessimistic),
    ))
}

fn check_lock(
    props: &TxnProps<'_>,
    m: &Mutation<'_>,
    lock: Lock,
    lock_ttl: &mut u64,
    min_commit_ts: &mut u64,
) -> ActionResult<LockStatus> {
    if lock.ts != props.start_ts {
        if m.pessimistic_check {
            return Err(ke::pessimistic_lock_not_found(props.start_ts, m.key).into());
        }
        let mut info = lock.to_lock_info(m.key);
        if props.is_pessimistic() {
            // As TiKV: keys a pessimistic txn did not lock are resolved at once.
            info.lock_ttl = 0;
        }
        return Err(ke::locked(info).into());
    }
    if !lock.is_pessimistic_lock() {
        // A duplicate prewrite: keep what is there.
        return Ok(LockStatus::Locked(if lock.use_async_commit {
            lock.min_commit_ts
        } else {
            0
        }));
    }
    if !props.is_pessimistic() {
        return Err(ke::lock_type_not_match(props.start_ts, m.key, true).into());
    }
    if m.expected_for_update_ts
        .is_some_and(|ts| ts != lock.for_update_ts)
    {
        return Err(ke::pessimistic_lock_not_found(props.start_ts, m.key).into());
    }
    *lock_ttl = (*lock_ttl).max(lock.ttl);
    *min_commit_ts = (*min_commit_ts).max(lock.min_commit_ts);
    Ok(LockStatus::Pessimistic)
}

/// A DO_PESSIMISTIC_CHECK key without its pessimistic lock may still be
/// prewritten if nothing was committed (or rolled back) on it since start_ts.
fn amend_pessimistic_lock(
    reader: &MvccReader<'_, '_>,
    props: &TxnProps<'_>,
    m: &Mutation<'_>,
) -> ActionResult<()> {
    let latest = reader.seek_write(m.key, u64::MAX)?;
    if latest
        .as_ref()
        .is_some_and(|(commit_ts, _)| *commit_ts >= props.start_ts)
    {
        return Err(ke::pessimistic_lock_not_found(props.start_ts, m.key).into());
    }
    check_assertion(reader, props, m, Some(&latest))
}

fn skip_constraint_check(props: &TxnProps<'_>, m: &Mutation<'_>) -> bool {
    if props.is_pessimistic() {
        !m.constraint_check
    } else {
        props.skip_constraint_check
    }
}

/// Conflict / rolled-back / already-exists checks against the newest commit
/// record; returns it.
fn check_for_newer_version(
    reader: &MvccReader<'_, '_>,
    props: &TxnProps<'_>,
    m: &Mutation<'_>,
) -> ActionResult<Option<(u64, Write)>> {
    let Some((commit_ts, write)) = reader.seek_write(m.key, u64::MAX)? else {
        return Ok(None);
    };
    let conflict = |reason| {
        ke::write_conflict(Conflict {
            start_ts: props.start_ts,
            conflict_start_ts: write.start_ts,
            conflict_commit_ts: commit_ts,
            key: m.key,
            primary: props.primary,
            reason,
        })
    };
    // A pessimistic txn checks (lazily) against what it read: for_update_ts.
    let (read_ts, reason) = if props.is_pessimistic() {
        (props.for_update_ts, Reason::LazyUniquenessCheck)
    } else {
        (props.start_ts, Reason::Optimistic)
    };
    if commit_ts > read_ts {
        return Err(conflict(reason).into());
    }
    if commit_ts == props.start_ts
        && (write.write_type == WriteType::Rollback || write.has_overlapped_rollback)
    {
        return Err(conflict(Reason::SelfRolledBack).into());
    }
    check_data_constraint(reader, m.should_not_exist(), &write, commit_ts, m.key)?;
    Ok(Some((commit_ts, write)))
}

/// `already_exist` when a should-not-exist key has a live value.
pub(crate) fn check_data_constraint(
    reader: &MvccReader<'_, '_>,
    should_not_exist: bool,
    write: &Write,
    commit_ts: u64,
    key: &[u8],
) -> ActionResult<()> {
    if !should_not_exist || write.write_type == WriteType::Delete {
        return Ok(());
    }
    let exists = write.write_type == WriteType::Put
        || reader
            .data_write(key, commit_ts.saturating_sub(1))?
            .is_some_and(|(_, w)| w.write_type == WriteType::Put);
    if exists {
        return Err(ke::already_exist(key).into());
    }
    Ok(())
}

/// Checks `m.assertion`; `loaded` is the newest record when the caller already
/// read it (None = not read: only the Strict level reads it then).
fn check_assertion(
    reader: &MvccReader<'_, '_>,
    props: &TxnProps<'_>,
    m: &Mutation<'_>,
    loaded: Option<&Option<(u64, Write)>>,
) -> ActionResult<()> {
    if m.assertion == Assertion::None || props.assertion_level == AssertionLevel::Off {
        return Ok(());
    }
    if loaded.is_none() && props.assertion_level != AssertionLevel::Strict {
        return Ok(());
    }
    let data = match loaded {
        Some(Some((_, w))) if w.is_data() => loaded.cloned().flatten(),
        Some(Some((ts, _))) => reader.data_write(m.key, *ts)?,
        Some(None) => None,
        None => reader.data_write(m.key, u64::MAX)?,
    };
    let (existing_start_ts, existing_commit_ts) = match (&data, m.assertion) {
        (None, Assertion::Exist) => (0, 0),
        (Some((ts, w)), Assertion::Exist) if w.write_type == WriteType::Delete => (w.start_ts, *ts),
        (Some((ts, w)), Assertion::NotExist) if w.write_type == WriteType::Put => (w.start_ts, *ts),
        _ => return Ok(()),
    };
    Err(ke::assertion_failed(AssertionFailure {
        start_ts: props.start_ts,
        key: m.key,
        assertion: m.assertion,
        existing_start_ts,
        existing_commit_ts,
    })
    .into())
}

/// Puts the lock (or queues it for 1PC) and returns its min_commit_ts.
fn write_lock(
    st: &mut PrewriteState,
    cm: &ConcurrencyManager,
    props: &TxnProps<'_>,
    m: &Mutation<'_>,
    mut lock: Lock,
    replaces_pessimistic: bool,
) -> u64 {
    if let Some(value) = m.value() {
        if is_short_value(value) {
            lock.short_value = Some(value.to_vec());
        } else {
            st.txn.put_value(m.key, props.start_ts, value.to_vec());
        }
    }
    let kind = if st.fallback {
        CommitKind::TwoPc
    } else {
        props.commit_kind
    };
    if let CommitKind::Async { .. } = kind {
        lock.use_async_commit = true;
        if m.key == props.primary {
            lock.secondaries = props.secondaries.to_vec();
        }
    }
    let max_commit_ts = match kind {
        CommitKind::TwoPc => {
            st.txn.put_lock(m.key, &lock);
            return 0;
        }
        CommitKind::Async { max_commit_ts } | CommitKind::OnePc { max_commit_ts } => max_commit_ts,
    };
    let base = cm_min_commit_ts(props, lock.min_commit_ts);
    let mut final_ts = 0;
    let guard = cm.lock_key(m.key, |max_ts| {
        let ts = base.max(max_ts.saturating_add(1));
        if max_commit_ts != 0 && ts > max_commit_ts {
            return None;
        }
        lock.min_commit_ts = ts;
        final_ts = ts;
        Some(lock.clone())
    });
    let Some(guard) = guard else {
        // min_commit_ts would pass max_commit_ts: fall back to 2PC as TiKV does.
        st.fallback = true;
        lock.use_async_commit = false;
        lock.secondaries.clear();
        st.txn.put_lock(m.key, &lock);
        return 0;
    };
    st.guards.push(guard);
    if let CommitKind::OnePc { .. } = kind {
        st.one_pc_locks
            .push((m.key.to_vec(), lock, replaces_pessimistic));
    } else {
        st.txn.put_lock(m.key, &lock);
    }
    final_ts
}

/// `max(start_ts, for_update_ts) + 1`, and at least the lock's own floor; the
/// caller also takes `max_ts + 1` under the memory-table mutex.
fn cm_min_commit_ts(props: &TxnProps<'_>, lock_min_commit_ts: u64) -> u64 {
    props.start_ts.max(props.for_update_ts).saturating_add(1).max(lock_min_commit_ts)
}

impl Mutation<'_> {
    pub(crate) fn should_not_exist(&self) -> bool {
        matches!(self.op, Op::Insert | Op::CheckNotExists)
    }

    fn lock_type(&self) -> LockType {
        match self.op {
            Op::Put | Op::Insert => LockType::Put,
            Op::Del => LockType::Delete,
            _ => LockType::Lock,
        }
    }

    fn value(&self) -> Option<&[u8]> {
        matches!(self.op, Op::Put | Op::Insert).then_some(self.value)
    }
}
