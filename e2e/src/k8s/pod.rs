//! What a kubelet derives from a pod spec before and while running it, as pure functions: the
//! `$(VAR)` expansion of commands and env, the downward API, probe targets, and the status a
//! node reports. The node agent ([`super::node_agent`]) and the rendered-pods test use them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

/// Expands `$(NAME)` in `input` as the kubelet does: a known name is replaced by its value,
/// `$$` is a literal `$`, and anything else (unknown names, an unclosed `$(`) stays as written.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(close) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..=close];
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&rest[at..at + close + 3]),
            }
            rest = &after[close + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// What the kubelet knows about one pod, for the downward API.
#[derive(Clone, Debug, Default)]
pub struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub node: String,
    pub service_account: String,
    pub ip: Option<Ipv4Addr>,
    pub host_ip: Option<Ipv4Addr>,
}

impl PodFacts {
    /// The value of a `fieldRef` path, if the downward API offers it.
    pub fn field(&self, path: &str, pod: Option<&Pod>) -> Option<String> {
        let ip = |a: Option<Ipv4Addr>| a.map(|a| a.to_string());
        Some(match path {
            "metadata.name" => self.name.clone(),
            "metadata.namespace" => self.namespace.clone(),
            "metadata.uid" => self.uid.clone(),
            "spec.nodeName" => self.node.clone(),
            "spec.serviceAccountName" => self.service_account.clone(),
            "status.podIP" | "status.podIPs" => ip(self.ip)?,
            "status.hostIP" | "status.hostIPs" => ip(self.host_ip)?,
            other => {
                // metadata.labels['k'] / metadata.annotations['k']
                let (map, key) = other
                    .strip_prefix("metadata.labels['")
                    .map(|k| ("labels", k))
                    .or_else(|| {
                        other
                            .strip_prefix("metadata.annotations['")
                            .map(|k| ("annotations", k))
                    })?;
                let key = key.strip_suffix("']")?;
                let meta = &pod?.metadata;
                let values = if map == "labels" {
                    &meta.labels
                } else {
                    &meta.annotations
                };
                values.as_ref()?.get(key)?.clone()
            }
        })
    }
}

/// The container's environment in order, each value expanded against the ones before it, as
/// the kubelet builds it, after `service_env` (what the kubelet adds for Services: here the
/// API server's `KUBERNETES_SERVICE_*`). A source the agent cannot give is an error naming it.
pub fn container_env(
    env: &[EnvVar],
    facts: &PodFacts,
    pod: Option<&Pod>,
    service_env: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let mut vars: BTreeMap<String, String> = service_env.iter().cloned().collect();
    let mut out: Vec<(String, String)> = service_env.to_vec();
    for var in env {
        let value = if let Some(value) = &var.value {
            expand(value, &vars)
        } else if let Some(from) = &var.value_from {
            let path = from.field_ref.as_ref().map(|f| f.field_path.as_str());
            match path.and_then(|p| facts.field(p, pod)) {
                Some(value) => value,
                None => {
                    return Err(format!(
                        "env {}: source {} is not supported by the node agent",
                        var.name,
                        serde_json::to_string(from).unwrap_or_default()
                    ))
                }
            }
        } else {
            String::new()
        };
        vars.insert(var.name.clone(), value.clone());
        out.retain(|(k, _)| k != &var.name);
        out.push((var.name.clone(), value));
    }
    Ok(out)
}

/// The argv of a container: command then args, each expanded against `env`.
pub fn argv(c: &Container, env: &[(String, String)]) -> Vec<String> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    c.command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(|a| expand(a, &vars))
        .collect()
}

/// What a probe checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeTarget {
    /// GET this URL; 200-399 passes.
    Http(String),
    /// Connect to this address.
    Tcp(String),
}

/// The port a probe names, resolving a named port through the container's ports.
fn port(p: &IntOrString, c: &Container) -> Result<i32, String> {
    match p {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("probe port {name} is not a port of container {}", c.name)),
    }
}

/// Where `probe` of container `c` checks, on the pod's address `ip`.
pub fn probe_target(probe: &Probe, c: &Container, ip: Ipv4Addr) -> Result<ProbeTarget, String> {
    if let Some(get) = &probe.http_get {
        let scheme = get.scheme.as_deref().unwrap_or("HTTP");
        if scheme != "HTTP" {
            return Err(format!(
                "{scheme} probes are not supported by the node agent"
            ));
        }
        let host = get.host.clone().unwrap_or_else(|| ip.to_string());
        let path = get.path.as_deref().unwrap_or("/");
        return Ok(ProbeTarget::Http(format!(
            "http://{host}:{}{path}",
            port(&get.port, c)?
        )));
    }
    if let Some(tcp) = &probe.tcp_socket {
        return Ok(ProbeTarget::Tcp(format!("{ip}:{}", port(&tcp.port, c)?)));
    }
    Err(format!(
        "container {}: only httpGet and tcpSocket probes are supported",
        c.name
    ))
}

/// One container's state, as the agent tracks it.
#[derive(Clone, Debug, Default)]
pub struct ContainerState {
    pub name: String,
    pub image: String,
    pub running_since: Option<String>,
    pub ready: bool,
    pub restarts: i32,
    /// The last exit: (exit code, reason, finished at).
    pub last_exit: Option<(i32, String, String)>,
    /// Exited for good (restart policy `Never`, or `OnFailure` after a clean exit): the exit
    /// code, reason, finished at.
    pub terminated: Option<(i32, String, String)>,
    /// Why it cannot start (e.g. an image the agent cannot run).
    pub waiting: Option<(String, String)>,
}

/// The pod's phase from its containers' states: `Succeeded` / `Failed` once every container
/// terminated for good, `Running` once any has started, else `Pending`.
pub fn phase(containers: &[ContainerState]) -> &'static str {
    if !containers.is_empty() && containers.iter().all(|c| c.terminated.is_some()) {
        let clean = containers
            .iter()
            .all(|c| c.terminated.as_ref().is_some_and(|(code, _, _)| *code == 0));
        return if clean { "Succeeded" } else { "Failed" };
    }
    let started = containers
        .iter()
        .any(|c| c.running_since.is_some() || c.restarts > 0 || c.terminated.is_some());
    if started {
        "Running"
    } else {
        "Pending"
    }
}

/// The pod status a node reports (a merge patch of `status`): phase, addresses, the four
/// conditions and the containers' states.
pub fn status_patch(
    ip: Option<Ipv4Addr>,
    host_ip: Ipv4Addr,
    started_at: &str,
    containers: &[ContainerState],
    now: &str,
) -> Value {
    let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let phase = phase(containers);
    let cond = |kind: &str, ok: bool| {
        json!({
            "type": kind,
            "status": if ok { "True" } else { "False" },
            "lastTransitionTime": now,
            "lastProbeTime": null,
        })
    };
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let state = match (&c.running_since, &c.waiting) {
                (Some(since), _) => json!({ "running": { "startedAt": since } }),
                (None, _) if c.terminated.is_some() => {
                    let (code, reason, at) = c.terminated.clone().unwrap_or_default();
                    json!({ "terminated": {
                        "exitCode": code, "reason": reason, "finishedAt": at, "startedAt": at,
                    }})
                }
                (None, Some((reason, message))) => {
                    json!({ "waiting": { "reason": reason, "message": message } })
                }
                (None, None) => json!({ "waiting": { "reason": "ContainerCreating" } }),
            };
            let last = c
                .last_exit
                .as_ref()
                .map_or(json!({}), |(code, reason, at)| {
                    json!({ "terminated": {
                        "exitCode": code, "reason": reason, "finishedAt": at, "startedAt": at,
                    }})
                });
            json!({
                "name": c.name,
                "image": c.image,
                "imageID": format!("process://{}", c.image),
                "containerID": format!("process://{}", c.name),
                "ready": c.ready,
                "started": c.running_since.is_some(),
                "restartCount": c.restarts,
                "state": state,
                "lastState": last,
            })
        })
        .collect();
    let mut status = json!({
        "phase": phase,
        "hostIP": host_ip.to_string(),
        "hostIPs": [{ "ip": host_ip.to_string() }],
        "startTime": started_at,
        "conditions": [
            cond("PodScheduled", true),
            cond("Initialized", true),
            cond("ContainersReady", all_ready),
            cond("Ready", all_ready),
        ],
        "containerStatuses": statuses,
    });
    if let Some(ip) = ip {
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{ "ip": ip.to_string() }]);
    }
    json!({ "status": status })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, EnvVarSource, HTTPGetAction, ObjectFieldSelector, TCPSocketAction,
    };

    #[test]
    fn expansion_follows_the_kubelet() {
        let vars = BTreeMap::from([
            ("POD_NAME".to_owned(), "basic-store-1".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]);
        assert_eq!(
            expand("--advertise-addr=$(POD_NAME).peer.db.svc:20160", &vars),
            "--advertise-addr=basic-store-1.peer.db.svc:20160"
        );
        assert_eq!(expand("$(UNKNOWN)-$(EMPTY)x", &vars), "$(UNKNOWN)-x");
        assert_eq!(
            expand("$$(POD_NAME) $$ $x $(open", &vars),
            "$(POD_NAME) $ $x $(open"
        );
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }
    }

    #[test]
    fn env_comes_from_the_downward_api_earlier_vars_and_the_service_env() {
        let facts = PodFacts {
            name: "basic-placement-0".into(),
            namespace: "db".into(),
            node: "node-1".into(),
            ip: Some(Ipv4Addr::new(10, 213, 9, 10)),
            ..PodFacts::default()
        };
        let env = vec![
            field("POD_NAME", "metadata.name"),
            field("POD_NAMESPACE", "metadata.namespace"),
            field("NODE_NAME", "spec.nodeName"),
            field("POD_IP", "status.podIP"),
            EnvVar {
                name: "GREETING".into(),
                value: Some(
                    "hello $(POD_NAME) in $(POD_NAMESPACE) via $(KUBERNETES_SERVICE_HOST)".into(),
                ),
                ..EnvVar::default()
            },
        ];
        let service = [("KUBERNETES_SERVICE_HOST".to_owned(), "10.0.0.1".to_owned())];
        let got: BTreeMap<_, _> = container_env(&env, &facts, None, &service)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(got["POD_NAME"], "basic-placement-0");
        assert_eq!(got["NODE_NAME"], "node-1");
        assert_eq!(got["POD_IP"], "10.213.9.10");
        assert_eq!(
            got["GREETING"],
            "hello basic-placement-0 in db via 10.0.0.1"
        );
        let unsupported = container_env(&[field("X", "spec.nope")], &facts, None, &[]).unwrap_err();
        assert!(unsupported.contains("env X"), "{unsupported}");
    }

    #[test]
    fn labels_come_through_the_downward_api() {
        let mut pod = Pod::default();
        pod.metadata.labels = Some(BTreeMap::from([("app".to_owned(), "kv".to_owned())]));
        let facts = PodFacts::default();
        assert_eq!(
            facts.field("metadata.labels['app']", Some(&pod)).as_deref(),
            Some("kv")
        );
        assert_eq!(facts.field("metadata.labels['nope']", Some(&pod)), None);
    }

    #[test]
    fn probes_resolve_named_ports_on_the_pod_address() {
        let c = Container {
            name: "operator".into(),
            ports: Some(vec![ContainerPort {
                name: Some("metrics".into()),
                container_port: 8080,
                ..ContainerPort::default()
            }]),
            ..Container::default()
        };
        let ip = Ipv4Addr::new(10, 0, 0, 7);
        let http = Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".into()),
                port: IntOrString::String("metrics".into()),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        };
        assert_eq!(
            probe_target(&http, &c, ip).unwrap(),
            ProbeTarget::Http("http://10.0.0.7:8080/readyz".into())
        );
        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(20160),
                ..TCPSocketAction::default()
            }),
            ..Probe::default()
        };
        assert_eq!(
            probe_target(&tcp, &c, ip).unwrap(),
            ProbeTarget::Tcp("10.0.0.7:20160".into())
        );
        let bad = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("grpc".into()),
                ..TCPSocketAction::default()
            }),
            ..Probe::default()
        };
        assert!(probe_target(&bad, &c, ip).unwrap_err().contains("grpc"));
    }

    #[test]
    fn the_status_is_ready_only_when_every_container_is() {
        let host = Ipv4Addr::new(10, 0, 0, 1);
        let ip = Some(Ipv4Addr::new(10, 0, 0, 9));
        let mut c = ContainerState {
            name: "store".into(),
            image: "img:1".into(),
            running_since: Some("t0".into()),
            ..ContainerState::default()
        };
        let patch = status_patch(ip, host, "t0", &[c.clone()], "t1");
        let s = &patch["status"];
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.0.0.9");
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "False");
        c.ready = true;
        let patch = status_patch(ip, host, "t0", &[c.clone()], "t1");
        let ready = patch["status"]["conditions"][3].clone();
        assert_eq!(
            (ready["type"].as_str(), ready["status"].as_str()),
            (Some("Ready"), Some("True"))
        );
        assert_eq!(
            patch["status"]["containerStatuses"][0]["state"]["running"]["startedAt"],
            "t0"
        );
        let waiting = ContainerState {
            name: "x".into(),
            waiting: Some(("ErrImagePull".into(), "no binary".into())),
            ..ContainerState::default()
        };
        let patch = status_patch(None, host, "t0", &[waiting], "t1");
        assert_eq!(patch["status"]["phase"], "Pending");
        assert_eq!(
            patch["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ErrImagePull"
        );
        assert!(patch["status"].get("podIP").is_none());
        let done = |code| ContainerState {
            terminated: Some((code, "Completed".into(), "t2".into())),
            ..ContainerState::default()
        };
        assert_eq!(phase(&[done(0)]), "Succeeded");
        assert_eq!(phase(&[done(0), done(3)]), "Failed");
        let patch = status_patch(ip, host, "t0", &[done(3)], "t3");
        assert_eq!(
            patch["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            3
        );
    }
}
