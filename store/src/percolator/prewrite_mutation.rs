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

/// What the key's current lock means for this mutation.
enum Checked {
    /// Our own prewrite lock is already there: its min_commit_ts if async.
    Duplicate(u64),
    /// Go on and write `lock` (replacing our pessimistic lock, or amending a
    /// missing one).
    Write {
        lock: Lock,
        replaces_pessimistic: bool,
        amended: bool,
    },
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
        let msg = "cannot handle checkNotExists in pessimistic prewrite";
        return Err(ke::abort(msg.into()).into());
    }
    if m.should_not_exist() {
        cm.update_max_ts(props.start_ts);
    }
    let (lock, replaces_pessimistic, amended) = match check_existing_lock(reader, props, m)? {
        Checked::Duplicate(min_commit_ts) => return Ok(min_commit_ts),
        Checked::Write {
            lock,
            replaces_pessimistic,
            amended,
        } => (lock, replaces_pessimistic, amended),
    };
    let prev_write = if skip_constraint_check(props, m) {
        None
    } else {
        Some(check_for_newer_version(reader, props, m)?)
    };
    if !amended {
        check_assertion(reader, props, m, prev_write.as_ref())?;
    }
    if should_not_write {
        // Like a read at start_ts; nothing is written.
        cm.update_max_ts(props.start_ts);
        return Ok(match props.commit_kind {
            CommitKind::TwoPc => 0,
            _ => props.min_commit_ts.max(props.start_ts.saturating_add(1)),
        });
    }
    Ok(write_lock(st, cm, props, m, lock, replaces_pessimistic))
}

/// Builds the lock to write and checks it against the key's current lock.
fn check_existing_lock(
    reader: &MvccReader<'_, '_>,
    props: &TxnProps<'_>,
    m: &Mutation<'_>,
) -> ActionResult<Checked> {
    let mut lock = Lock::new(
        m.lock_type(),
        props.primary.to_vec(),
        props.start_ts,
        props.lock_ttl,
    );
    lock.for_update_ts = props.for_update_ts;
    lock.txn_size = props.txn_size;
    lock.min_commit_ts = props.min_commit_ts;
    match reader.load_lock(m.key)? {
        Some(existing) => check_lock(props, m, existing, lock),
        None => {
            if m.pessimistic_check {
                amend_pessimistic_lock(reader, props, m)?;
            }
            Ok(Checked::Write {
                lock,
                replaces_pessimistic: false,
                amended: m.pessimistic_check,
            })
        }
    }
}

fn check_lock(
    props: &TxnProps<'_>,
    m: &Mutation<'_>,
    existing: Lock,
    mut lock: Lock,
) -> ActionResult<Checked> {
    if existing.ts != props.start_ts {
        if m.pessimistic_check {
            return Err(ke::pessimistic_lock_not_found(props.start_ts, m.key).into());
        }
        let mut info = existing.to_lock_info(m.key);
        if props.is_pessimistic() {
            // As TiKV: keys a pessimistic txn did not lock are resolved at once.
            info.lock_ttl = 0;
        }
        return Err(ke::locked(info).into());
    }
    if !existing.is_pessimistic_lock() {
        let async_ts = existing.min_commit_ts;
        return Ok(Checked::Duplicate(if existing.use_async_commit {
            async_ts
        } else {
            0
        }));
    }
    if !props.is_pessimistic() {
        return Err(ke::lock_type_not_match(props.start_ts, m.key, true).into());
    }
    if m.expected_for_update_ts
        .is_some_and(|ts| ts != existing.for_update_ts)
    {
        return Err(ke::pessimistic_lock_not_found(props.start_ts, m.key).into());
    }
    // The pessimistic lock's TTL and min_commit_ts may have been pushed, and
    // rollbacks of other txns recorded in it must survive.
    lock.ttl = lock.ttl.max(existing.ttl);
    lock.min_commit_ts = lock.min_commit_ts.max(existing.min_commit_ts);
    lock.rollback_ts = existing.rollback_ts;
    Ok(Checked::Write {
        lock,
        replaces_pessimistic: true,
        amended: false,
    })
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
    let max_commit_ts = match kind {
        CommitKind::TwoPc => {
            st.txn.put_lock(m.key, &lock);
            return 0;
        }
        CommitKind::Async { max_commit_ts } | CommitKind::OnePc { max_commit_ts } => max_commit_ts,
    };
    if let CommitKind::Async { .. } = kind {
        lock.use_async_commit = true;
        if m.key == props.primary {
            lock.secondaries = props.secondaries.to_vec();
        }
    }
    let Some((guard, min_commit_ts)) = publish(cm, props, m.key, &mut lock, max_commit_ts) else {
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
    min_commit_ts
}

/// Sets `lock.min_commit_ts` to `max(max_ts, start_ts, for_update_ts) + 1`
/// (at least its own floor) and publishes the lock in the memory table, both
/// under the table's mutex. None if that passes a non-zero `max_commit_ts`.
fn publish(
    cm: &ConcurrencyManager,
    props: &TxnProps<'_>,
    key: &[u8],
    lock: &mut Lock,
    max_commit_ts: u64,
) -> Option<(KeyHandleGuard, u64)> {
    let floor = props
        .start_ts
        .max(props.for_update_ts)
        .saturating_add(1)
        .max(lock.min_commit_ts);
    let guard = cm.lock_key(key, |max_ts| {
        let ts = floor.max(max_ts.saturating_add(1));
        if max_commit_ts != 0 && ts > max_commit_ts {
            return None;
        }
        lock.min_commit_ts = ts;
        Some(lock.clone())
    })?;
    Some((guard, lock.min_commit_ts))
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
