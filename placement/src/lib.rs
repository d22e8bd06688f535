//! Placement: the placement driver of this TiKV-compatible store, wire-compatible with PD.
//!
//! Layers, lowest first:
//! - the pure core, no tokio and no I/O: [`cluster`] (bootstrap, stores, regions, GC safe
//!   points, keyspaces), [`region_heartbeat`] (what a heartbeat changes and what its answer
//!   carries), [`schedule`] (operators and the checkers that make them), [`tso`] and [`id`]
//!   state machines, and [`meta`], the records and write commands they emit;
//! - persistence and replication: [`storage`] (RocksDB), [`member`] (the members' raft group)
//!   and [`writer`], the handle the server writes through; [`fault`] injects their failures
//!   in tests;
//! - the operator tool: [`ctl`] (`placement-ctl`, over the HTTP API);
//! - Kubernetes: [`topology`] derives store topology labels from pods and nodes;
//! - the shell: [`state`] (shared server state; the view's only writer), [`stream_registry`]
//!   (the open region heartbeat streams, one per store), [`service`] (gRPC `pdpb.PD`,
//!   `keyspacepb.Keyspace`, etcd), [`http`] (PD's HTTP API), [`gate`] (what non-leaders
//!   answer), [`metrics`], and [`server`], which serves all of it on one port (and the raft
//!   traffic of a group on the peer port).
//!
//! The binary (`src/main.rs`) only parses flags and calls [`server::run`]; tests call
//! [`server::start`] in-process.

pub mod cluster;
pub mod config;
pub mod ctl;
pub mod error;
pub mod fault;
pub mod gate;
pub mod http;
pub mod id;
pub mod member;
pub mod meta;
pub mod metrics;
pub mod region_heartbeat;
pub mod schedule;
pub mod server;
pub mod service;
pub mod state;
pub mod storage;
pub mod stream_registry;
pub mod topology;
pub mod tso;
pub mod writer;

pub use config::Config;
pub use error::{Error, Result};
pub use server::{run, start, RunningServer};
