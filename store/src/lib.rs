//! The storage node: serves `tikvpb.Tikv` on top of raft-replicated RocksDB.
//!
//! Layers, lowest first, each using only those below it:
//! `engine` (RocksDB, column families) -> `mvcc` (key codec, Percolator records,
//! reader) and `txn` (Percolator actions) -> `raftstore` (raft-rs groups per
//! region) -> `storage` (RawKV and transactional commands, latches) -> `server`
//! (gRPC, placement client, status HTTP). Nothing below `server` opens sockets.
//! `lock_manager` (pessimistic lock waiting, deadlock detection) sits beside
//! `storage`, which calls it; `server` serves its gRPC side. `disk` watches
//! the data directory's disk (a monitor thread started by `server`) and says
//! which writes `storage` still takes when it fills up.

pub mod clock;
pub mod config;
pub mod disk;
pub mod engine;
pub mod keys;
pub mod lock_manager;
pub mod metrics;
pub mod mvcc;
pub mod raftstore;
pub mod server;
pub mod storage;
pub mod txn;
