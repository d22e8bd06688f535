//! raft-rs's logger for the store's groups: its records in `tracing` (target `raft`), with
//! raft-rs's info records (elections, membership) at debug: a store runs thousands of groups.

pub fn raft_logger() -> slog::Logger {
    raftkit::raft_logger(tracing::Level::DEBUG)
}
