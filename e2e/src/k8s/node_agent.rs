//! A node agent: the kubelet's part of a node, as a test fixture. Pods bound to the node run as
//! processes of this machine, each in a network namespace of its own on one shared bridge (the
//! pod network, [`crate::netns::PodNet`]).
//!
//! An agent registers its Node (zone and hostname labels, Ready, addresses, capacity) with the
//! credentials of `system:node:<name>` (so the Node authorizer and the NodeRestriction admission
//! plugin hold it to its own Node, Lease and pods), renews its Lease in `kube-node-lease` and
//! reports node status every 10 s, and every half second lists the pods bound to it. For each new
//! pod it:
//!
//! - takes an address and a namespace on the bridge, whose `/etc/hosts` is cluster DNS
//!   ([`super::dns`], written by [`Fabric::publish_dns`]);
//! - prepares the volumes: ConfigMap, Secret, emptyDir, projected (service-account token through
//!   the TokenRequest API bound to the pod, `kube-root-ca.crt`, the downward API) and
//!   PersistentVolumeClaims, followed to their PersistentVolume's host directory (which outlives
//!   the pod, so a recreated pod keeps its data); each is bind-mounted at its mount path in a
//!   mount namespace private to the pod;
//! - runs each container's command and args (`$(VAR)` expanded) with its env (values, the
//!   downward API) plus `KUBERNETES_SERVICE_HOST`/`PORT` naming the API server's real address
//!   (no kube-proxy runs); a command's file name picks the workspace binary of that name
//!   (`/usr/local/bin/store` runs this build's `store`), which is how this fixture "pulls" images;
//! - runs readiness and liveness probes (httpGet, tcpSocket) with the spec's delays, periods and
//!   thresholds, restarts containers by the restart policy (liveness failures included) with a
//!   capped backoff, and reports pod status (phase, IPs, conditions, container states);
//! - honours deletion: SIGTERM, the grace period, SIGKILL, then removes the pod from the API
//!   server (grace 0, guarded by its uid) and frees its address.
//!
//! Not honoured: `securityContext` (processes run as the test's user), resource limits, init
//! containers, exec probes. [`NodeAgent::crash`] stops an agent and kills its pods as a failed
//! machine would; starting an agent of the same name again picks up the pods still bound to it.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Node, PersistentVolume, PersistentVolumeClaim, Pod, Probe, Secret,
    ServiceAccount, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;

use super::pod::{self, ContainerState, PodFacts, ProbeTarget};
use crate::netns::{self, BindMount, NetPod, PodNet};
use crate::process;

/// How often an agent lists its pods and each pod task looks at its containers.
const SYNC: Duration = Duration::from_millis(500);
/// How often the Lease and the node status are renewed (the kubelet's defaults).
const HEARTBEAT: Duration = Duration::from_secs(10);
/// The Lease's duration.
const LEASE_SECONDS: i32 = 40;
/// Longest wait between restarts of a crashing container.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Where the service-account volume lands; kube-rs and client-go read it there.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The current time as the API server writes `metav1.Time`.
fn now() -> String {
    serde_json::to_value(Time(Timestamp::now()))
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What every node of the test cluster shares: the pod network, where pods keep their files,
/// the binaries "images" resolve to, and the API server's address as pods reach it.
pub struct Fabric {
    net: Mutex<PodNet>,
    host_ip: Ipv4Addr,
    root: PathBuf,
    bin_dir: PathBuf,
    api_host: String,
    api_port: u16,
}

impl Fabric {
    /// A fabric over `net`, keeping pod files under `root`, resolving commands in `bin_dir`,
    /// and telling pods the API server is at `api_host:api_port`.
    pub fn new(
        net: PodNet,
        root: PathBuf,
        bin_dir: PathBuf,
        api_host: String,
        api_port: u16,
    ) -> Arc<Fabric> {
        let host_ip = net.host_ip();
        Arc::new(Fabric {
            net: Mutex::new(net),
            host_ip,
            root,
            bin_dir,
            api_host,
            api_port,
        })
    }

    /// The host's address on the pod network.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// Runs `f` on the pod network off the async runtime's threads (it runs `ip` commands).
    async fn with_net<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut PodNet) -> crate::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut net = me
                .net
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut net).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Keeps every pod's hosts file equal to what cluster DNS would answer, polling Services
    /// and EndpointSlices with `client` (an admin's: this is the cluster's DNS, not a node's).
    pub async fn publish_dns(self: Arc<Self>, client: Client) {
        use k8s_openapi::api::core::v1::Service;
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        let services: Api<Service> = Api::all(client.clone());
        let slices: Api<EndpointSlice> = Api::all(client);
        let mut last = None;
        loop {
            let all = ListParams::default();
            let lists = tokio::try_join!(services.list(&all), slices.list(&all));
            match lists {
                Ok((svc, eps)) => {
                    let entries = super::dns::hosts_entries(&svc.items, &eps.items);
                    if last.as_ref() != Some(&entries) {
                        let write = entries.clone();
                        match self.with_net(move |net| net.write_hosts(&write)).await {
                            Ok(()) => last = Some(entries),
                            Err(e) => tracing::warn!(error = %e, "writing hosts files"),
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "listing services for DNS"),
            }
            tokio::time::sleep(SYNC).await;
        }
    }
}

/// A Node's identity and topology.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub zone: String,
    /// The `node.kubernetes.io/instance-type` label.
    pub instance_type: String,
}

/// A running node agent.
pub struct NodeAgent {
    spec: NodeSpec,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl NodeAgent {
    /// Registers node `spec` with `client` (authenticated as `system:node:<name>`) and starts
    /// running the pods bound to it.
    pub async fn start(
        fabric: Arc<Fabric>,
        client: Client,
        spec: NodeSpec,
    ) -> Result<NodeAgent, String> {
        register(&client, &spec, fabric.host_ip).await?;
        let (stop, stopped) = watch::channel(false);
        let agent = Agent {
            fabric,
            client,
            spec: spec.clone(),
            pods: HashMap::new(),
        };
        let task = tokio::spawn(agent.run(stopped));
        Ok(NodeAgent { spec, stop, task })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Stops the agent as a crashed machine stops: heartbeats end and every pod process of the
    /// node is killed, while the API server still shows the pods until the control plane acts.
    pub async fn crash(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Node object an agent registers.
fn node_object(spec: &NodeSpec) -> Node {
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), spec.name.clone()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        (
            "kubernetes.io/arch".to_owned(),
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
        ),
        ("topology.kubernetes.io/zone".to_owned(), spec.zone.clone()),
        (
            "node.kubernetes.io/instance-type".to_owned(),
            spec.instance_type.clone(),
        ),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

/// The node status an agent reports: Ready, its address, capacity.
fn node_status(spec: &NodeSpec, host_ip: Ipv4Addr) -> serde_json::Value {
    let t = now();
    let condition = |kind: &str, status: &str, reason: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": reason,
               "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    let capacity =
        json!({"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    json!({"status": {
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID"),
            condition("Ready", "True", "KubeletReady"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": host_ip.to_string()},
            {"type": "Hostname", "address": spec.name},
        ],
        "capacity": capacity,
        "allocatable": capacity,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": spec.name, "systemUUID": spec.name, "bootID": spec.name,
            "kernelVersion": "", "osImage": "ferrokv e2e node agent",
            "containerRuntimeVersion": "process://", "kubeletVersion": super::tools::KUBERNETES_VERSION,
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        },
    }})
}

async fn register(client: &Client, spec: &NodeSpec, host_ip: Ipv4Addr) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes
        .create(&PostParams::default(), &node_object(spec))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(format!("registering node {}: {e}", spec.name)),
    }
    heartbeat(client, spec, host_ip).await
}

/// Renews the node's Lease and reports its status.
async fn heartbeat(client: &Client, spec: &NodeSpec, host_ip: Ipv4Addr) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            &spec.name,
            &PatchParams::default(),
            &Patch::Merge(node_status(spec, host_ip)),
        )
        .await
        .map_err(|e| format!("node {} status: {e}", spec.name))?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renew = LeaseSpec {
        holder_identity: Some(spec.name.clone()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        renew_time: Some(MicroTime(Timestamp::now())),
        ..LeaseSpec::default()
    };
    let result = match leases.get_opt(&spec.name).await {
        Ok(Some(mut lease)) => {
            lease.spec = Some(renew);
            leases
                .replace(&spec.name, &PostParams::default(), &lease)
                .await
                .map(drop)
        }
        Ok(None) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(spec.name.clone()),
                    namespace: Some("kube-node-lease".into()),
                    ..ObjectMeta::default()
                },
                spec: Some(renew),
            };
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(drop)
        }
        Err(e) => Err(e),
    };
    result.map_err(|e| format!("node {} lease: {e}", spec.name))
}

/// The agent's loop state.
struct Agent {
    fabric: Arc<Fabric>,
    client: Client,
    spec: NodeSpec,
    /// Pod tasks by uid: the latest object goes down the channel (`None`: the pod is gone).
    pods: HashMap<String, (watch::Sender<Option<Pod>>, tokio::task::JoinHandle<()>)>,
}

impl Agent {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut next_beat = Instant::now() + HEARTBEAT;
        let pods: Api<Pod> = Api::all(self.client.clone());
        let bound = ListParams::default().fields(&format!("spec.nodeName={}", self.spec.name));
        loop {
            if *stopped.borrow() {
                break;
            }
            if Instant::now() >= next_beat {
                if let Err(e) = heartbeat(&self.client, &self.spec, self.fabric.host_ip).await {
                    tracing::warn!(node = %self.spec.name, error = %e, "heartbeat");
                }
                next_beat = Instant::now() + HEARTBEAT;
            }
            match pods.list(&bound).await {
                Ok(list) => self.sync(list.items),
                Err(e) => tracing::debug!(node = %self.spec.name, error = %e, "listing pods"),
            }
            tokio::select! {
                () = tokio::time::sleep(SYNC) => {}
                _ = stopped.changed() => {}
            }
        }
        // A crash: every pod process dies with the machine.
        for (_, (_, task)) in self.pods.drain() {
            task.abort();
            let _ = task.await;
        }
        tracing::info!(node = %self.spec.name, "node agent stopped");
    }

    fn sync(&mut self, pods: Vec<Pod>) {
        let mut seen = Vec::new();
        for p in pods {
            let Some(uid) = p.metadata.uid.clone() else {
                continue;
            };
            seen.push(uid.clone());
            if let Some((tx, _)) = self.pods.get(&uid) {
                let _ = tx.send(Some(p));
                continue;
            }
            let terminal = matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            if terminal && p.metadata.deletion_timestamp.is_none() {
                continue; // finished before this agent (re)started: nothing to run
            }
            let (tx, rx) = watch::channel(Some(p.clone()));
            let runner = PodRunner::new(self.fabric.clone(), self.client.clone(), &self.spec, p);
            let task = tokio::spawn(runner.run(rx));
            self.pods.insert(uid, (tx, task));
        }
        for (uid, (tx, _)) in &self.pods {
            if !seen.contains(uid) {
                let _ = tx.send(None);
            }
        }
        self.pods.retain(|_, (_, task)| !task.is_finished());
    }
}

/// One container's process and bookkeeping.
struct Running {
    spec: Container,
    process: process::Node,
    /// The wrapper's arguments (namespaces, mounts, then the command).
    args: Vec<String>,
    state: ContainerState,
    readiness: Option<Checker>,
    liveness: Option<Checker>,
    restart_at: Option<Instant>,
    backoff: Duration,
}

/// A probe's schedule and counters.
struct Checker {
    target: ProbeTarget,
    period: Duration,
    timeout: Duration,
    failure_threshold: u32,
    success_threshold: u32,
    next: Instant,
    successes: u32,
    failures: u32,
}

impl Checker {
    fn new(probe: &Probe, target: ProbeTarget, started: Instant) -> Checker {
        let secs = |v: Option<i32>, default: i32| {
            Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
        };
        Checker {
            target,
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            failure_threshold: u32::try_from(probe.failure_threshold.unwrap_or(3).max(1))
                .unwrap_or(3),
            success_threshold: u32::try_from(probe.success_threshold.unwrap_or(1).max(1))
                .unwrap_or(1),
            next: started + secs(probe.initial_delay_seconds, 0),
            successes: 0,
            failures: 0,
        }
    }

    /// Runs the probe if due; `Some(true)` once the success threshold is met, `Some(false)`
    /// once the failure threshold is, `None` while neither changed.
    async fn tick(&mut self, http: &reqwest::Client) -> Option<bool> {
        if Instant::now() < self.next {
            return None;
        }
        self.next = Instant::now() + self.period;
        let ok = match &self.target {
            ProbeTarget::Http(url) => http
                .get(url)
                .timeout(self.timeout)
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() < 400),
            ProbeTarget::Tcp(addr) => {
                tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr.as_str()))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
        };
        if ok {
            self.failures = 0;
            self.successes += 1;
            (self.successes >= self.success_threshold).then_some(true)
        } else {
            self.successes = 0;
            self.failures += 1;
            (self.failures >= self.failure_threshold).then_some(false)
        }
    }
}

/// Runs one pod from bind to deletion.
struct PodRunner {
    fabric: Arc<Fabric>,
    client: Client,
    node: String,
    pod: Pod,
    name: String,
    namespace: String,
    uid: String,
    dir: PathBuf,
    net: Option<NetPod>,
    containers: Vec<Running>,
    started_at: String,
    last_status: Option<serde_json::Value>,
    http: reqwest::Client,
}

impl PodRunner {
    fn new(fabric: Arc<Fabric>, client: Client, spec: &NodeSpec, pod: Pod) -> PodRunner {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = fabric
            .root
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"));
        PodRunner {
            fabric,
            client,
            node: spec.name.clone(),
            pod,
            name,
            namespace,
            uid,
            dir,
            net: None,
            containers: Vec::new(),
            started_at: now(),
            last_status: None,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
        }
    }

    async fn run(mut self, mut updates: watch::Receiver<Option<Pod>>) {
        // Kill the processes if the task is aborted (a crash): the guard owns nothing but
        // makes sure `Drop` of the containers' `process::Node`s runs, which kills them.
        let mut prepared = false;
        loop {
            let latest = updates.borrow_and_update().clone();
            match latest {
                None => {
                    self.terminate(Duration::ZERO).await;
                    return;
                }
                Some(p) if p.metadata.deletion_timestamp.is_some() => {
                    let grace = p
                        .metadata
                        .deletion_grace_period_seconds
                        .unwrap_or(30)
                        .max(0);
                    self.terminate(Duration::from_secs(u64::try_from(grace).unwrap_or(0)))
                        .await;
                    self.remove(&p).await;
                    return;
                }
                Some(p) => self.pod = p,
            }
            if !prepared {
                match self.prepare().await {
                    Ok(()) => prepared = true,
                    Err(e) => {
                        tracing::warn!(pod = %self.name, error = %e, "cannot start the pod yet");
                        self.report_waiting("CreateContainerConfigError", &e).await;
                    }
                }
            } else {
                self.supervise().await;
            }
            self.report().await;
            tokio::select! {
                () = tokio::time::sleep(SYNC) => {}
                _ = updates.changed() => {}
            }
        }
    }

    /// Network, volumes, env and processes.
    async fn prepare(&mut self) -> Result<(), String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        if self.net.is_none() {
            let netns_name = format!("{}-{}", self.namespace, self.name);
            self.net = Some(
                self.fabric
                    .with_net(move |net| net.add_pod(&netns_name))
                    .await?,
            );
        }
        let net = self.net.clone().ok_or("no pod network")?;
        let mounts_by_volume = self
            .volumes(&spec.volumes.clone().unwrap_or_default())
            .await?;
        let facts = PodFacts {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            uid: self.uid.clone(),
            node: self.node.clone(),
            service_account: spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into()),
            ip: Some(net.ip),
            host_ip: Some(self.fabric.host_ip),
        };
        let service_env = vec![
            (
                "KUBERNETES_SERVICE_HOST".to_owned(),
                self.fabric.api_host.clone(),
            ),
            (
                "KUBERNETES_SERVICE_PORT".to_owned(),
                self.fabric.api_port.to_string(),
            ),
            (
                "KUBERNETES_SERVICE_PORT_HTTPS".to_owned(),
                self.fabric.api_port.to_string(),
            ),
        ];
        let mut containers = Vec::new();
        for c in &spec.containers {
            let env = pod::container_env(
                c.env.as_deref().unwrap_or_default(),
                &facts,
                Some(&self.pod),
                &service_env,
            )?;
            let mut argv = pod::argv(c, &env);
            if argv.is_empty() {
                return Err(format!("container {} names no command (the agent runs commands, not image entrypoints)", c.name));
            }
            let command = argv.remove(0);
            let binary = Path::new(&command)
                .file_name()
                .map(|n| self.fabric.bin_dir.join(n))
                .filter(|p| p.is_file())
                .ok_or_else(|| {
                    format!(
                        "image {:?}: no binary for command {command} in {}",
                        c.image,
                        self.fabric.bin_dir.display()
                    )
                })?;
            let mut mounts = Vec::new();
            for m in c.volume_mounts.iter().flatten() {
                let source = mounts_by_volume.get(&m.name).ok_or_else(|| {
                    format!("container {} mounts unknown volume {}", c.name, m.name)
                })?;
                let source = match &m.sub_path {
                    Some(sub) if !sub.is_empty() => source.join(sub),
                    _ => source.clone(),
                };
                let target = PathBuf::from(&m.mount_path);
                let point = target.clone();
                self.fabric
                    .with_net(move |net| net.mount_point(&point))
                    .await?;
                mounts.push(BindMount {
                    source,
                    target,
                    read_only: m.read_only.unwrap_or(false),
                });
            }
            let (program, args) = netns::command(&net, &mounts, &binary, &argv);
            let mut process = process::Node::new(
                format!("{}/{}", self.name, c.name),
                program,
                self.dir.join(format!("{}.log", c.name)),
            );
            process.set_env(env);
            let started = Instant::now();
            let probe = |p: &Option<Probe>| -> Result<Option<Checker>, String> {
                p.as_ref()
                    .map(|p| Ok(Checker::new(p, pod::probe_target(p, c, net.ip)?, started)))
                    .transpose()
            };
            containers.push(Running {
                args,
                readiness: probe(&c.readiness_probe)?,
                liveness: probe(&c.liveness_probe)?,
                spec: c.clone(),
                process,
                state: ContainerState {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    ..ContainerState::default()
                },
                restart_at: Some(Instant::now()),
                backoff: Duration::from_secs(1),
            });
        }
        self.containers = containers;
        self.supervise().await;
        Ok(())
    }

    /// Host directories for the pod's volumes, by volume name.
    async fn volumes(&self, volumes: &[Volume]) -> Result<HashMap<String, PathBuf>, String> {
        let mut out = HashMap::new();
        for v in volumes {
            let dir = self.dir.join("volumes").join(&v.name);
            let mkdir =
                |d: &Path| std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()));
            if let Some(claim) = &v.persistent_volume_claim {
                out.insert(v.name.clone(), self.claim_dir(&claim.claim_name).await?);
                continue;
            }
            mkdir(&dir)?;
            if let Some(cm) = &v.config_map {
                let data = self.config_map(&cm.name).await?;
                write_items(&dir, &data, cm.items.as_deref())?;
            } else if let Some(secret) = &v.secret {
                let name = secret.secret_name.clone().unwrap_or_default();
                let data = self.secret(&name).await?;
                write_items(&dir, &data, secret.items.as_deref())?;
            } else if let Some(projected) = &v.projected {
                for source in projected.sources.iter().flatten() {
                    if let Some(token) = &source.service_account_token {
                        let text = self
                            .token(token.expiration_seconds, token.audience.clone())
                            .await?;
                        write_file(&dir.join(&token.path), text.as_bytes())?;
                    }
                    if let Some(cm) = &source.config_map {
                        let data = self.config_map(&cm.name).await?;
                        write_items(&dir, &data, cm.items.as_deref())?;
                    }
                    if let Some(secret) = &source.secret {
                        let data = self.secret(&secret.name).await?;
                        write_items(&dir, &data, secret.items.as_deref())?;
                    }
                    if let Some(downward) = &source.downward_api {
                        for item in downward.items.iter().flatten() {
                            let facts = PodFacts {
                                name: self.name.clone(),
                                namespace: self.namespace.clone(),
                                uid: self.uid.clone(),
                                node: self.node.clone(),
                                ..PodFacts::default()
                            };
                            let value = item
                                .field_ref
                                .as_ref()
                                .and_then(|f| facts.field(&f.field_path, Some(&self.pod)))
                                .ok_or_else(|| {
                                    format!("downward API item {} is not supported", item.path)
                                })?;
                            write_file(&dir.join(&item.path), value.as_bytes())?;
                        }
                    }
                }
            } else if v.empty_dir.is_none() {
                return Err(format!("volume {}: only configMap, secret, projected, emptyDir and persistentVolumeClaim volumes are supported", v.name));
            }
            out.insert(v.name.clone(), dir);
        }
        Ok(out)
    }

    async fn config_map(&self, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let cm = api
            .get(name)
            .await
            .map_err(|e| format!("configmap {name}: {e}"))?;
        let mut out: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        out.extend(
            cm.binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        Ok(out)
    }

    async fn secret(&self, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let s = api
            .get(name)
            .await
            .map_err(|e| format!("secret {name}: {e}"))?;
        Ok(s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect())
    }

    /// A token of the pod's ServiceAccount bound to the pod, as the kubelet requests it.
    async fn token(
        &self,
        expiration: Option<i64>,
        audience: Option<String>,
    ) -> Result<String, String> {
        let account = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: audience.map(|a| vec![a]),
                expiration_seconds: Some(expiration.unwrap_or(3607).max(600)),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(self.name.clone()),
                    uid: Some(self.uid.clone()),
                }),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let answer = api
            .create_token_request(&account, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("token for serviceaccount {account}: {e}"))?;
        answer
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| "the token request returned no token".into())
    }

    /// The host directory of the PersistentVolume bound to claim `name`.
    async fn claim_dir(&self, name: &str) -> Result<PathBuf, String> {
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let claim = claims
            .get(name)
            .await
            .map_err(|e| format!("claim {name}: {e}"))?;
        let volume = claim
            .spec
            .and_then(|s| s.volume_name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("claim {name} is not bound yet"))?;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let pv = volumes
            .get(&volume)
            .await
            .map_err(|e| format!("volume {volume}: {e}"))?;
        let path = pv
            .spec
            .and_then(|s| s.host_path)
            .map(|h| PathBuf::from(h.path))
            .ok_or_else(|| format!("volume {volume} is not a host directory"))?;
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Starts containers that are due, restarts the ones that exited (by restart policy), runs
    /// probes.
    async fn supervise(&mut self) {
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        for c in &mut self.containers {
            if let Some(status) = c.process.exited() {
                let code = status.code().unwrap_or(128 + status_signal(&status));
                let reason = if code == 0 { "Completed" } else { "Error" };
                c.state.running_since = None;
                c.state.ready = false;
                let again = policy == "Always" || (policy == "OnFailure" && code != 0);
                if again {
                    c.state.last_exit = Some((code, reason.into(), now()));
                    c.restart_at = Some(Instant::now() + c.backoff);
                    c.backoff = (c.backoff * 2).min(MAX_BACKOFF);
                } else {
                    c.state.terminated = Some((code, reason.into(), now()));
                }
                tracing::info!(pod = %self.name, container = %c.spec.name, code, "container exited");
            }
            if c.restart_at.is_some_and(|at| Instant::now() >= at) {
                c.restart_at = None;
                match c.process.spawn(&c.args) {
                    Ok(()) => {
                        if c.state.running_since.is_none() && (c.state.last_exit.is_some()) {
                            c.state.restarts += 1;
                        }
                        c.state.running_since = Some(now());
                        c.state.waiting = None;
                        let started = Instant::now();
                        let net_ip = self.net.as_ref().map(|n| n.ip);
                        if let Some(ip) = net_ip {
                            for (slot, probe) in [
                                (&mut c.readiness, &c.spec.readiness_probe),
                                (&mut c.liveness, &c.spec.liveness_probe),
                            ] {
                                if let (Some(p), Ok(t)) = (
                                    probe,
                                    probe.as_ref().map_or(Err(String::new()), |p| {
                                        pod::probe_target(p, &c.spec, ip)
                                    }),
                                ) {
                                    *slot = Some(Checker::new(p, t, started));
                                }
                            }
                        }
                    }
                    Err(e) => {
                        c.state.waiting = Some(("RunContainerError".into(), e.to_string()));
                        c.restart_at = Some(Instant::now() + c.backoff);
                    }
                }
            }
            if c.state.running_since.is_none() {
                continue;
            }
            match &mut c.readiness {
                Some(checker) => {
                    if let Some(ready) = checker.tick(&self.http).await {
                        c.state.ready = ready;
                    }
                }
                None => c.state.ready = true,
            }
            if let Some(checker) = &mut c.liveness {
                if checker.tick(&self.http).await == Some(false) {
                    tracing::info!(pod = %self.name, container = %c.spec.name, "liveness probe failed; restarting");
                    let _ = c.process.kill().await;
                    c.state.running_since = None;
                    c.state.ready = false;
                    c.state.last_exit = Some((137, "Error".into(), now()));
                    c.restart_at = Some(Instant::now() + c.backoff);
                }
            }
        }
    }

    async fn report_waiting(&mut self, reason: &str, message: &str) {
        for c in self.pod.spec.clone().unwrap_or_default().containers {
            if !self.containers.iter().any(|r| r.spec.name == c.name) {
                self.containers.push(Running {
                    process: process::Node::new(
                        c.name.clone(),
                        PathBuf::new(),
                        self.dir.join("unused.log"),
                    ),
                    state: ContainerState {
                        name: c.name.clone(),
                        image: c.image.clone().unwrap_or_default(),
                        ..ContainerState::default()
                    },
                    spec: c,
                    args: Vec::new(),
                    readiness: None,
                    liveness: None,
                    restart_at: None,
                    backoff: Duration::from_secs(1),
                });
            }
        }
        for c in &mut self.containers {
            c.state.waiting = Some((reason.into(), message.into()));
        }
    }

    /// Sends the pod status when it changed.
    async fn report(&mut self) {
        let states: Vec<ContainerState> = self.containers.iter().map(|c| c.state.clone()).collect();
        let ip = self.net.as_ref().map(|n| n.ip);
        let key = pod::status_patch(ip, self.fabric.host_ip, &self.started_at, &states, "");
        if self.last_status.as_ref() == Some(&key) {
            return;
        }
        let patch = pod::status_patch(ip, self.fabric.host_ip, &self.started_at, &states, &now());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        match api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => self.last_status = Some(key),
            Err(e) => tracing::debug!(pod = %self.name, error = %e, "status update"),
        }
    }

    /// Stops every container: SIGTERM, up to `grace`, SIGKILL; then frees the network.
    async fn terminate(&mut self, grace: Duration) {
        let stops = self.containers.iter_mut().map(|c| c.process.stop(grace));
        for result in futures::future::join_all(stops).await {
            if let Err(e) = result {
                tracing::warn!(pod = %self.name, error = %e, "stopping a container");
            }
        }
        if let Some(net) = self.net.take() {
            let name = net.name.clone();
            if let Err(e) = self.fabric.with_net(move |n| n.remove_pod(&name)).await {
                tracing::warn!(pod = %self.name, error = %e, "removing the pod network");
            }
        }
    }

    /// Removes the terminated pod from the API server (the kubelet's final delete).
    async fn remove(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(&self.name, &params).await {
            tracing::debug!(pod = %self.name, error = %e, "final delete");
        }
    }
}

impl Drop for PodRunner {
    /// An aborted task (a crashed node) kills its processes. The pod's network namespace and
    /// address stay, as a dead node's pod keeps its IP until the pod is deleted: no other pod
    /// may take the address its DNS name still points at, and the agent, back, reuses them.
    fn drop(&mut self) {
        for c in &mut self.containers {
            c.process.kill_blocking();
        }
    }
}

fn status_signal(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.signal().unwrap_or(0)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `data` (a ConfigMap's or Secret's) into `dir`: every key, or just `items` (key to
/// path).
fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Result<(), String> {
    match items {
        Some(items) => {
            for item in items {
                let bytes = data
                    .get(&item.key)
                    .ok_or_else(|| format!("key {} is missing", item.key))?;
                write_file(&dir.join(&item.path), bytes)?;
            }
        }
        None => {
            for (key, bytes) in data {
                write_file(&dir.join(key), bytes)?;
            }
        }
    }
    Ok(())
}

/// Where pods find the service-account volume (for callers checking a pod's view).
pub fn service_account_dir() -> &'static str {
    SERVICE_ACCOUNT_DIR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_carries_zone_and_hostname_labels_and_reports_ready() {
        let spec = NodeSpec {
            name: "node-2".into(),
            zone: "zone-b".into(),
            instance_type: "storage-optimized".into(),
        };
        let node = node_object(&spec);
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["topology.kubernetes.io/zone"], "zone-b");
        assert_eq!(labels["kubernetes.io/hostname"], "node-2");
        let status = node_status(&spec, Ipv4Addr::new(10, 213, 9, 1));
        let ready = status["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["status"], "True");
        assert_eq!(status["status"]["addresses"][0]["address"], "10.213.9.1");
        assert_eq!(status["status"]["allocatable"]["pods"], "110");
    }

    #[test]
    fn items_pick_keys_or_take_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let data = BTreeMap::from([
            ("a.toml".to_owned(), b"x = 1".to_vec()),
            ("ca.crt".to_owned(), b"PEM".to_vec()),
        ]);
        write_items(dir.path(), &data, None).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a.toml")).unwrap(), b"x = 1");
        let picked = dir.path().join("picked");
        let items = [k8s_openapi::api::core::v1::KeyToPath {
            key: "ca.crt".into(),
            path: "sub/ca.pem".into(),
            ..k8s_openapi::api::core::v1::KeyToPath::default()
        }];
        write_items(&picked, &data, Some(&items)).unwrap();
        assert_eq!(std::fs::read(picked.join("sub/ca.pem")).unwrap(), b"PEM");
        assert!(!picked.join("a.toml").exists());
        let missing = [k8s_openapi::api::core::v1::KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            ..k8s_openapi::api::core::v1::KeyToPath::default()
        }];
        assert!(write_items(&picked, &data, Some(&missing))
            .unwrap_err()
            .contains("nope"));
    }

    #[test]
    fn times_are_written_as_the_api_server_writes_them() {
        let t = now();
        assert!(t.ends_with('Z') && t.contains('T'), "{t}");
        assert!(!t.contains('.'), "metav1.Time has whole seconds: {t}");
    }
}
