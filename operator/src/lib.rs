//! ferrokv's Kubernetes operator: the `TikvCluster` resource ([`crd`]), pure builders that turn
//! one into the Kubernetes objects that run it ([`builders`]), the status it reports
//! ([`status`]), the pure planners of its stateful steps ([`scale`], [`upgrade`], [`failover`],
//! [`members`]) and the reconcile loop that applies them ([`controller`]).
//!
//! The operator never links the store or placement crates: it drives the running cluster
//! only through placement's PD-compatible HTTP API, so the same logic would drive a real PD.

pub mod builders;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod error;
pub mod failover;
#[cfg(test)]
mod fixtures;
pub mod lease;
pub mod members;
pub mod placement;
pub mod scale;
pub mod server;
pub mod status;
pub mod upgrade;

pub use error::{Error, Result};

use kube::CustomResourceExt;

/// The `TikvCluster` CRD as YAML, exactly as committed in `crds/tikvclusters.yaml`.
pub fn crd_yaml() -> Result<String> {
    serde_yaml::to_string(&crd::TikvCluster::crd()).map_err(|source| Error::Yaml {
        what: "TikvCluster CRD",
        source,
    })
}
