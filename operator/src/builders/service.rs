//! Services of a component: the headless peer Service that gives each pod a stable DNS name
//! (`<pod>.<cluster>-<component>-peer.<ns>.svc`), and the client Service clients dial.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{metadata, peer_service_name, selector_labels, Component};
use crate::crd::{ServiceType, TikvCluster};
use crate::Result;

fn ports(c: Component) -> Vec<ServicePort> {
    c.ports()
        .iter()
        .map(|&(name, port)| ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(IntOrString::String(name.into())),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        })
        .collect()
}

/// Headless Service publishing not-ready pods too: members must resolve each other while they
/// bootstrap, before any of them is ready.
pub fn peer_service(tc: &TikvCluster, c: Component) -> Result<Service> {
    Ok(Service {
        metadata: metadata(tc, c, peer_service_name(tc, c))?,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(tc, c)),
            ports: Some(ports(c)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// Load-balanced Service over ready pods, of the type the spec asks for.
pub fn client_service(tc: &TikvCluster, c: Component) -> Result<Service> {
    let service_type = match c.spec(tc).service_type {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Ok(Service {
        metadata: metadata(tc, c, super::name(tc, c))?,
        spec: Some(ServiceSpec {
            type_: Some(service_type.into()),
            selector: Some(selector_labels(tc, c)),
            ports: Some(ports(c)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::cluster;
    use super::*;
    use crate::crd::TikvClusterSpec;

    #[test]
    fn peer_service_is_headless_and_publishes_not_ready() {
        let tc = cluster(TikvClusterSpec::default());
        let svc = peer_service(&tc, Component::Placement).unwrap();
        assert_eq!(svc.metadata.name.as_deref(), Some("basic-placement-peer"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let ports: Vec<_> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, [2379, 2380]);
        assert_eq!(
            spec.selector.unwrap()["app.kubernetes.io/component"],
            "placement"
        );
    }

    #[test]
    fn client_service_takes_the_spec_type() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.store.common.service_type = ServiceType::LoadBalancer;
        let svc = client_service(&tc, Component::Store).unwrap();
        assert_eq!(svc.metadata.name.as_deref(), Some("basic-store"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let ports: Vec<_> = spec
            .ports
            .unwrap()
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.port))
            .collect();
        assert_eq!(ports, [("grpc".into(), 20160), ("status".into(), 20180)]);
    }
}
