//! The storage node: serves `tikvpb.Tikv` on top of raft-replicated RocksDB.
//!
//! Layers, lowest first, each using only those below it:
//! `engine` (RocksDB, column families; `data_keys` says where user data lives
//! in it) -> `mvcc` (key codec, Percolator records, reader, the write set of
//! one command) and `percolator` (Percolator actions, one per transactional
//! RPC) -> `raftstore` (raft-rs groups per region) -> `storage` (RawKV and
//! transactional commands, latches) -> `server` (gRPC, placement client,
//! status HTTP). Nothing below `server` opens sockets.
//! `lock_manager` (pessimistic lock waiting, deadlock detection) sits beside
//! `storage`, which calls it; `server` serves its gRPC side. `disk` watches
//! the data directory's disk (a monitor thread started by `server`) and says
//! which writes `storage` still takes when it fills up.
//!
//! # Naming rules
//!
//! - A module is named after what it holds, not after the layer it sits in:
//!   `percolator` (the actions), `mvcc::write_set` (the engine writes of one
//!   command), `storage::txn_commands` (the commands running the actions),
//!   `data_keys` (user data in the engine), `raftstore::local_keys` (raft
//!   metadata in the `raft` CF). No two modules share a leaf name, apart from
//!   a parent's own `config`, `error` and `tests`.
//! - Type names follow the TiKV code they mirror (`MvccTxn`,
//!   `ConcurrencyManager`, `Latches`) unless that name would mislead; the
//!   module path says where they sit.
//! - Placement is "placement" in our names (`server::placement_client`,
//!   `PlacementClient`, `PlacementError`, a `placement` variable). "PD" only
//!   where PD's protocol is meant: `pdpb` and its service traits, and the
//!   TiKV-compatible `pd-endpoints` setting and `--pd` flag.
//! - One error type per seam, named after it (`EngineError`, `TxnError`,
//!   `RaftStateError`, `SnapError`, `PlacementError`, `ServerError`; the
//!   storage layer's, which the gRPC answers are built from, is
//!   `storage::Error`). A variant wrapping one lower error keeps it as its
//!   `source` (`#[from]` / `#[source]`), never as a `String`.
//! - `must_*` helpers exist only in test code, and they panic rather than
//!   return an error.
//! - `tests.rs` and `*_tests.rs` are `#[cfg(test)]` children holding tests of
//!   their parent module; test scaffolding shared between them is
//!   `test_util`, `test_cluster` or `fake_*`, also `#[cfg(test)]`.

pub mod clock;
pub mod config;
pub mod data_keys;
pub mod disk;
pub mod engine;
pub mod lock_manager;
pub mod metrics;
pub mod mvcc;
pub mod percolator;
pub mod raftstore;
pub mod server;
pub mod storage;
