//! What the store and placement share around raft-rs, written once.
//!
//! - [`raft_log`]: the raft log on disk with raft-rs's `MemStorage` as its cache, and the
//!   `Storage` raft-rs reads, over either user's engine, key layout and snapshots.
//! - [`raft_logger`]: raft-rs logs through slog; this sends its records to `tracing`
//!   (target `raft`), with raft-rs's info records at the level each user chooses (the store
//!   runs thousands of groups and keeps them at debug; placement's one group logs its
//!   elections and membership at info).

pub mod raft_log;

use slog::{Drain, Level, OwnedKVList, Record};

/// Forwards slog records to `tracing`; `info` is the level raft-rs's info records get.
struct ToTracing {
    info: tracing::Level,
}

impl Drain for ToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, _: &OwnedKVList) -> Result<(), slog::Never> {
        let level = match record.level() {
            Level::Critical | Level::Error => tracing::Level::ERROR,
            Level::Warning => tracing::Level::WARN,
            Level::Info => self.info,
            Level::Debug | Level::Trace => tracing::Level::TRACE,
        };
        // `tracing`'s macros take the level as a constant.
        match level {
            tracing::Level::ERROR => tracing::error!(target: "raft", "{}", record.msg()),
            tracing::Level::WARN => tracing::warn!(target: "raft", "{}", record.msg()),
            tracing::Level::INFO => tracing::info!(target: "raft", "{}", record.msg()),
            tracing::Level::DEBUG => tracing::debug!(target: "raft", "{}", record.msg()),
            _ => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

/// A slog logger for raft-rs whose records land in `tracing` (target `raft`); raft-rs's info
/// records (elections, membership) at `info`.
pub fn raft_logger(info: tracing::Level) -> slog::Logger {
    slog::Logger::root(ToTracing { info }.fuse(), slog::o!())
}
