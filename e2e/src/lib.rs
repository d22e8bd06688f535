//! End-to-end harness: runs placement and stores as real processes on loopback ports and lets
//! tests drive them with the official `tikv-client`, as users would.
//!
//! Layers, lowest first: [`ports`] (loopback port plans), [`process`] (one child: spawn, signal,
//! log), [`pd_api`] (placement's PD HTTP API and the readiness rule), [`builder`]
//! ([`ClusterBuilder`]: what to start), [`cluster`] ([`Cluster`]: kill, stop, restart, wait
//! ready), [`client`] (client configs per API version, the "serves requests" check) and
//! [`playground`] (the `playground` command). [`wait`] holds the deadline-bounded polling every layer uses, and
//! [`testing`] the glue for the suites in `tests/`.
//!
//! For replication and failure suites: [`topology`] (where each region's replicas and leader
//! are, waits until every region is fully replicated), [`status`] (a store's status port:
//! `/status`, metrics, raft filters), [`fault`] (partitions built from those filters) and
//! [`load`] (a bounded client write load that records every acknowledged write).
//!
//! For the fault suite: [`partition`] (real packet loss between processes that each run in a
//! network namespace of their own, and SIGSTOP pauses) and [`suite`] (workloads recording
//! histories, a seeded nemesis, the `jepsen` crate's checkers, the summary table).
//!
//! For running the operator's rendered pods as Kubernetes would: [`netns`] (a network namespace
//! per pod on a private bridge, hosts files as cluster DNS, volumes bind-mounted per pod).
//!
//! For the clients in other languages (Go, Java, go-ycsb): [`foreign`] (builds cached outside
//! the checkout by source hash, bounded runs, reasons to skip), [`ycsb`] (go-ycsb: build, run,
//! read its summaries) and [`etcd`] (a 3-member etcd cluster to compare with).
//!
//! For the container suites: [`docker`] (the Docker client: images built by
//! `scripts/images.sh`, networks and containers removed on drop) and [`kind`] (a throwaway kind
//! cluster driven with `kubectl` and `helm` under its own kubeconfig).
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! let mut cluster = e2e::ClusterBuilder::default().stores(1).must_start().await;
//! let client = e2e::must_raw_client(&cluster, e2e::Api::V2).await;
//! client.put("k".to_owned(), "v".to_owned()).await.unwrap();
//! cluster.kill_store(0).await.unwrap();
//! cluster.restart_store(0).await.unwrap();
//! cluster.must_ready(Duration::from_secs(30)).await;
//! # }
//! ```

pub mod builder;
pub mod client;
pub mod cluster;
pub mod docker;
pub mod error;
pub mod etcd;
pub mod fault;
pub mod foreign;
pub mod k8s;
pub mod kind;
pub mod load;
pub mod netns;
pub mod partition;
pub mod pd_api;
pub mod playground;
pub mod ports;
pub mod process;
pub mod status;
pub mod suite;
pub mod testing;
pub mod topology;
pub mod wait;
pub mod ycsb;

pub use builder::ClusterBuilder;
pub use client::{must_raw_client, must_serve, must_txn_client, wait_serving, Api};
pub use cluster::{Cluster, Role, READY_TIMEOUT};
pub use error::{Error, Result};
pub use load::{longest_gap_after, LoadReport, WriteLoad};
pub use ports::PortPlan;
pub use status::FAULT_INJECTION_CONFIG;
pub use testing::{init_test_tracing, must_single_store_cluster};
pub use wait::{must_eventually, must_within, wait_for, with_deadline};
