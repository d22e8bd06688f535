//! A real Kubernetes control plane for the operator suite (`tests/k8s.rs`), and the nodes that
//! run its pods.
//!
//! [`tools`] builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and
//! helm once from the Go module proxy into a cache outside the clone; [`pki`] makes the
//! throwaway certificates; [`control_plane`] runs the four control-plane processes on this
//! machine and drives them with the built `kubectl` and `helm` under kubeconfigs of its own.
//!
//! Test fixtures, named as such: [`node_agent`] (the kubelet's part: Nodes, Leases, pods run as
//! processes in network namespaces, probes, status), [`dns`] (cluster DNS as hosts files),
//! [`provisioner`] (PersistentVolumes as host directories); [`pod`] holds the pure parts of
//! running a pod spec.

pub mod cluster;
pub mod control_plane;
pub mod dns;
pub mod node_agent;
pub mod pki;
pub mod pod;
pub mod provisioner;
pub mod tools;

pub use cluster::KubeCluster;
pub use control_plane::{ControlPlane, Credentials};
pub use tools::Tools;
