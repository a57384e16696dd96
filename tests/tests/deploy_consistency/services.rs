//! The Services and the PodDisruptionBudget of the rendered manifests select the pods,
//! on the proxy's ports.

use crate::manifests::{Manifests, container_port};
use crate::problems::Problems;
use crate::yaml::{at, named, str_at, u64_at, yaml};
use crate::{MANIFESTS, VALUES};

#[test]
fn services_find_every_pod() {
    let values = yaml(VALUES);
    let manifests = Manifests::load();
    let statefulset = manifests.statefulset();
    let proxy_container = manifests.container("proxy");
    let pod_labels = at(statefulset, "spec.template.metadata.labels");
    let gossip_port = u64_at(&values, "proxy.ports.gossip", VALUES);
    let grpc_port = u64_at(&values, "proxy.ports.grpc", VALUES);
    let mut problems = Problems::default();

    let headless_name = str_at(statefulset, "spec.serviceName", MANIFESTS);
    let headless = manifests.get("Service", headless_name);
    problems.same(
        &format!("{MANIFESTS} Service {headless_name} clusterIP"),
        at(headless, "spec.clusterIP").as_str(),
        Some("None"),
    );
    problems.same(
        &format!("{MANIFESTS} Service {headless_name} publishNotReadyAddresses"),
        at(headless, "spec.publishNotReadyAddresses").as_bool(),
        Some(true),
    );
    let client = manifests.get("Service", str_at(statefulset, "metadata.name", MANIFESTS));
    for (service, port_name, port, protocol) in [
        (headless, "gossip", gossip_port, "UDP"),
        (headless, "grpc", grpc_port, "TCP"),
        (client, "grpc", grpc_port, "TCP"),
    ] {
        let service_name = str_at(service, "metadata.name", MANIFESTS);
        let what = format!("{MANIFESTS} Service {service_name} port {port_name}");
        let Some(entry) = named(at(service, "spec.ports"), port_name) else {
            problems.push(format!("{what}: missing"));
            continue;
        };
        problems.same(
            &format!("{what} port"),
            at(entry, "port").as_u64(),
            Some(port),
        );
        problems.same(
            &format!("{what} protocol"),
            at(entry, "protocol").as_str(),
            Some(protocol),
        );
        problems.same(
            &format!("{what} targetPort (proxy container port)"),
            container_port(proxy_container, at(entry, "targetPort")),
            Some(port),
        );
        let selector = at(service, "spec.selector").as_mapping();
        problems.check(
            selector.is_some_and(|selector| {
                !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
            }),
            || format!("{MANIFESTS} Service {service_name} selector does not match the pods"),
        );
    }
    let budget = manifests.only("PodDisruptionBudget");
    problems.same(
        &format!("{MANIFESTS} PodDisruptionBudget selector vs the StatefulSet's"),
        at(budget, "spec.selector"),
        at(statefulset, "spec.selector"),
    );
    problems.finish();
}
