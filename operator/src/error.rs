//! The operator's one error type. Each variant says what failed and keeps its source.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),

    /// Serializing an object (YAML or JSON) failed.
    #[error("serializing {what}: {source}")]
    Yaml {
        what: &'static str,
        #[source]
        source: serde_yaml::Error,
    },

    /// The user's `config` TOML of a component does not parse.
    #[error("spec.{component}.config is not valid TOML: {reason}")]
    ComponentConfig {
        component: &'static str,
        reason: String,
    },

    /// Placement's HTTP API did not answer, or answered with an error status.
    #[error("placement {url}: {source}")]
    Placement {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// Placement answered, but not with what the operator needs (no leader yet, bad JSON).
    #[error("placement {url}: {reason}")]
    PlacementUnavailable { url: String, reason: String },

    /// Adding or removing the finalizer failed, or the pass it guards did.
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    /// The resource lacks a field the API server always sets (name, namespace, uid).
    #[error("TikvCluster is missing metadata.{0}")]
    MissingMetadata(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
