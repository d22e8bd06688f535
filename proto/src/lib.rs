//! Wire protocol of the store and the placement driver.
//!
//! The `.proto` files under `proto/` are written for this project and are
//! wire-compatible with TiKV's kvproto (same packages, services, methods, message
//! names and field numbers) for every message and RPC we serve, plus the small
//! etcd v3 subset PD exposes and our internal raft transport (`storepb`).
//! Code is generated at build time with `protox` + `tonic-prost-build`; every
//! service trait has default methods that answer `Unimplemented`.

pub mod codec;
pub mod membership;

/// Cluster, store, region and peer metadata.
pub mod metapb {
    #![allow(clippy::all)]
    tonic::include_proto!("metapb");
}

/// Region errors (`region_error` of kv responses).
pub mod errorpb {
    #![allow(clippy::all)]
    tonic::include_proto!("errorpb");
}

/// Raft conf-change type used by PD scheduling commands.
pub mod eraftpb {
    #![allow(clippy::all)]
    tonic::include_proto!("eraftpb");
}

/// Deadlock detection between stores (`deadlock_server::{Deadlock, DeadlockServer}`).
pub mod deadlock {
    #![allow(clippy::all)]
    tonic::include_proto!("deadlock");
}

/// Transactional and raw kv requests and responses.
pub mod kvrpcpb {
    #![allow(clippy::all)]
    tonic::include_proto!("kvrpcpb");
}

/// Placement driver service (`pd_server::{Pd, PdServer}`, `pd_client::PdClient`).
pub mod pdpb {
    #![allow(clippy::all)]
    tonic::include_proto!("pdpb");
}

/// Store service (`tikv_server::{Tikv, TikvServer}`, `tikv_client::TikvClient`).
pub mod tikvpb {
    #![allow(clippy::all)]
    tonic::include_proto!("tikvpb");
}

/// Keyspace service served by PD.
pub mod keyspacepb {
    #![allow(clippy::all)]
    tonic::include_proto!("keyspacepb");
}

/// etcd key-value record.
pub mod mvccpb {
    #![allow(clippy::all)]
    tonic::include_proto!("mvccpb");
}

/// etcd v3 KV/Range and Cluster/MemberList, served on the PD port.
pub mod etcdserverpb {
    #![allow(clippy::all)]
    tonic::include_proto!("etcdserverpb");
}

/// Internal store-to-store raft transport.
pub mod storepb {
    #![allow(clippy::all)]
    tonic::include_proto!("storepb");
}

/// Internal placement-member-to-member raft transport and replicated metadata changes.
pub mod placementpb {
    #![allow(clippy::all)]
    tonic::include_proto!("placementpb");
}

#[cfg(test)]
mod tests;
