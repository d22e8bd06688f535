//! The id allocator for stores, regions and peers: unique, increasing, never reused.
//!
//! [`IdState`] is the pure core: it hands out ids up to a persisted high-water mark and asks
//! for a new mark [`ID_BATCH`] further when the batch is used up, so the disk is touched once
//! per thousand ids. After a restart allocation resumes above the stored mark; ids of a batch
//! that was never used are skipped, never repeated. [`IdAllocator`] is the async driver.

use std::ops::RangeInclusive;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::meta::MetaWrite;
use crate::writer::MetaWriter;

/// Ids reserved per persisted batch.
pub const ID_BATCH: u64 = 1000;

/// What [`IdState::alloc`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdStep {
    Ready(RangeInclusive<u64>),
    /// Persist this mark, call [`IdState::saved`], then retry.
    NeedSave(u64),
}

/// Pure allocation state.
#[derive(Debug, Clone)]
pub struct IdState {
    last: u64,
    limit: u64,
    batch: u64,
}

impl IdState {
    /// Resumes above `saved_limit` (0 on a new cluster: the first id is 1).
    pub fn recover(saved_limit: u64, batch: u64) -> Self {
        IdState {
            last: saved_limit,
            limit: saved_limit,
            batch: batch.max(1),
        }
    }

    /// Allocates `n` consecutive ids.
    pub fn alloc(&mut self, n: u64) -> Result<IdStep> {
        if n == 0 {
            return Err(Error::invalid("must allocate at least one id"));
        }
        let end = self
            .last
            .checked_add(n)
            .ok_or_else(|| Error::invalid("id space exhausted"))?;
        if end > self.limit {
            return Ok(IdStep::NeedSave(end.saturating_add(self.batch)));
        }
        let first = self.last + 1;
        self.last = end;
        Ok(IdStep::Ready(first..=end))
    }

    /// The mark to persist when the current batch is used up, so that the next
    /// [`IdState::alloc`] of one id needs no disk write.
    pub fn refill_mark(&self) -> Option<u64> {
        (self.last >= self.limit).then(|| self.last.saturating_add(self.batch))
    }

    pub fn saved(&mut self, limit: u64) {
        self.limit = self.limit.max(limit);
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// Async driver persisting marks through the [`MetaWriter`].
pub struct IdAllocator {
    state: Mutex<IdState>,
    save_lock: tokio::sync::Mutex<()>,
    writer: Arc<MetaWriter>,
}

impl IdAllocator {
    pub fn new(saved_limit: u64, writer: Arc<MetaWriter>) -> Self {
        IdAllocator {
            state: Mutex::new(IdState::recover(saved_limit, ID_BATCH)),
            save_lock: tokio::sync::Mutex::new(()),
            writer,
        }
    }

    /// Resumes above `saved_limit`, the mark replicated before this member's term.
    pub fn reset(&self, saved_limit: u64) {
        *self.state.lock() = IdState::recover(saved_limit, ID_BATCH);
    }

    /// One new id.
    pub async fn alloc(&self) -> Result<u64> {
        Ok(*self.alloc_n(1).await?.start())
    }

    /// One id from the batch already persisted, without waiting for the disk; `None` when the
    /// batch is used up (then [`IdAllocator::refill`] makes room). For callers that hold locks.
    pub fn try_alloc(&self) -> Option<u64> {
        match self.state.lock().alloc(1) {
            Ok(IdStep::Ready(ids)) => Some(*ids.start()),
            _ => None,
        }
    }

    /// Persists a new high-water mark if the current batch is used up.
    pub async fn refill(&self) -> Result<()> {
        let _guard = self.save_lock.lock().await;
        let Some(limit) = self.state.lock().refill_mark() else {
            return Ok(());
        };
        self.writer.write(vec![MetaWrite::IdLimit(limit)]).await?;
        self.state.lock().saved(limit);
        Ok(())
    }

    /// `n` consecutive new ids.
    pub async fn alloc_n(&self, n: u64) -> Result<RangeInclusive<u64>> {
        loop {
            let step = self.state.lock().alloc(n)?;
            match step {
                IdStep::Ready(ids) => return Ok(ids),
                IdStep::NeedSave(limit) => {
                    let _guard = self.save_lock.lock().await;
                    if self.state.lock().limit() >= limit {
                        continue;
                    }
                    self.writer.write(vec![MetaWrite::IdLimit(limit)]).await?;
                    self.state.lock().saved(limit);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn must_alloc(s: &mut IdState, n: u64) -> RangeInclusive<u64> {
        loop {
            match s.alloc(n).unwrap() {
                IdStep::Ready(r) => return r,
                IdStep::NeedSave(limit) => s.saved(limit),
            }
        }
    }

    #[test]
    fn allocates_from_one_in_batches() {
        let mut s = IdState::recover(0, 10);
        assert_eq!(s.alloc(1).unwrap(), IdStep::NeedSave(11));
        s.saved(11);
        assert_eq!(s.alloc(1).unwrap(), IdStep::Ready(1..=1));
        assert_eq!(s.alloc(3).unwrap(), IdStep::Ready(2..=4));
        assert_eq!(must_alloc(&mut s, 20), 5..=24);
        assert!(s.limit() >= 24);
        assert!(s.alloc(0).is_err());
    }

    #[test]
    fn refill_mark_only_when_used_up() {
        let mut s = IdState::recover(5, 10);
        assert_eq!(s.refill_mark(), Some(15));
        s.saved(15);
        assert_eq!(s.refill_mark(), None);
        assert_eq!(must_alloc(&mut s, 10), 6..=15);
        assert_eq!(s.refill_mark(), Some(25));
    }

    #[test]
    fn restart_never_repeats() {
        let mut s = IdState::recover(0, 10);
        let mut last = 0;
        for _ in 0..25 {
            last = *must_alloc(&mut s, 1).end();
        }
        let mut restarted = IdState::recover(s.limit(), 10);
        let next = *must_alloc(&mut restarted, 1).start();
        assert!(next > last, "{next} after {last}");
    }
}
