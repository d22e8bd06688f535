//! The pods the operator renders boot a working cluster.
//!
//! A `TikvCluster` (`basic` in namespace `db`: three placement members forming a raft group, three
//! stores) goes through
//! the operator's own builders ([`operator::builders::objects`]: exactly what the reconcile loop
//! applies). Every pod of every StatefulSet is then run the way a kubelet would run it:
//!
//! - the container's `command`, `args` and `env` are taken as rendered, with `$(VAR)` expanded as
//!   the kubelet expands them (`$$` escapes, unknown names stay as written). Downward-API values:
//!   `metadata.name` is `<statefulset>-<ordinal>`, `metadata.namespace` the cluster's namespace,
//!   `spec.nodeName` [`NODE_NAME`], `status.podIP` the pod's address, `status.hostIP` the host's
//!   bridge address. The one substitution: the image's `/usr/local/bin/<name>` is the binary of
//!   that name this workspace built ([`e2e::process::Binaries`]).
//! - each pod gets its own network namespace on a private bridge ([`e2e::netns`]), so it binds
//!   the fixed ports (2379/2380, 20160/20180) on its own address, and `/etc/hosts` stands in for
//!   cluster DNS: every pod's `<pod>.<peer-service>.<ns>.svc` and every client Service's
//!   `<service>.<ns>.svc` (pointing at the component's first pod), with their shorter and
//!   `cluster.local` forms.
//! - each volume mount gets a directory of the pod's own (the ConfigMap's keys written as files;
//!   the data claim empty), bind-mounted at the rendered mount path in a mount namespace private
//!   to the pod, so the rendered paths (`/etc/store/store.toml`, `/var/lib/store`) are used as
//!   they are and three stores still have three data directories. Only when a mount path cannot
//!   be made a mount point on this host (its parent is not writable) is the volume remapped to
//!   its directory, and then only that path prefix is rewritten in the arguments; the test says
//!   so on stdout. On a root machine with a writable `/etc` and `/var/lib` nothing is remapped.
//!
//! The cluster must then work: placement's HTTP API (reached over the bridge at the placement
//! pod's address) shows every store `Up` under its advertised DNS address with every region led;
//! every rendered readiness and liveness probe answers 2xx; and `kvcheck`, run as a client pod in
//! a namespace of its own against the placement endpoint the operator renders for clients, does
//! raw and transactional writes and reads (API V1 and V2) and exits 0.
//!
//! Needs root and iproute2; without them (or when network namespaces cannot be created) the test
//! prints `SKIPPED: <reason>` and passes. Everything it creates is removed when it ends, panics
//! included. Build the binaries first: `cargo build -p store -p placement -p e2e --bins`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use e2e::k8s::pod::expand;
use e2e::netns::{self, BindMount, NetPod, PodNet};
use e2e::pd_api::{check_ready, PdHttp};
use e2e::process::{Binaries, Node};
use e2e::{wait_for, with_deadline};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, PodSpec, Probe, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use operator::builders::{objects, placement_endpoint, Component};
use operator::crd::{TikvCluster, TikvClusterSpec};
use tempfile::TempDir;

/// Namespace of the rendered cluster.
const NAMESPACE: &str = "db";
/// `spec.nodeName` of every pod.
const NODE_NAME: &str = "e2e-node-0";
/// Bound on the whole test.
const TEST_LIMIT: Duration = Duration::from_secs(300);
/// Bound on each wait for the cluster.
const READY_LIMIT: Duration = Duration::from_secs(90);
/// Bound on the client pod's run (kvcheck bounds itself a little earlier).
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// The cluster under test, as the API server would hand it to the operator.
fn cluster() -> TikvCluster {
    let mut spec = TikvClusterSpec::default();
    spec.placement.replicas = 3;
    spec.store.replicas = 3;
    let mut tc = TikvCluster::new("basic", spec);
    tc.metadata.namespace = Some(NAMESPACE.into());
    tc.metadata.uid = Some(format!("e2e-rendered-pods-{}", std::process::id()));
    tc
}

/// The objects the operator applies for `tc`, sorted by kind.
struct Rendered {
    stateful_sets: Vec<StatefulSet>,
    config_maps: Vec<ConfigMap>,
    services: Vec<Service>,
}

fn must_render(tc: &TikvCluster) -> Rendered {
    let mut r = Rendered {
        stateful_sets: Vec::new(),
        config_maps: Vec::new(),
        services: Vec::new(),
    };
    for obj in objects(tc).expect("the operator renders the cluster") {
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "StatefulSet" => r.stateful_sets.push(must_parse(&kind, obj)),
            "ConfigMap" => r.config_maps.push(must_parse(&kind, obj)),
            "Service" => r.services.push(must_parse(&kind, obj)),
            _ => {}
        }
    }
    r
}

fn must_parse<T: serde::de::DeserializeOwned>(kind: &str, obj: serde_json::Value) -> T {
    serde_json::from_value(obj).unwrap_or_else(|e| panic!("rendered {kind} does not parse: {e}"))
}

/// What the kubelet knows about one pod, for the downward API.
struct PodFacts {
    name: String,
    ip: Ipv4Addr,
    host_ip: Ipv4Addr,
}

/// The container's environment in order, each value expanded against the ones before it, as
/// the kubelet builds it.
fn must_env(env: &[EnvVar], pod: &PodFacts) -> Vec<(String, String)> {
    let mut vars = BTreeMap::new();
    let mut out = Vec::new();
    for var in env {
        let value = if let Some(value) = &var.value {
            expand(value, &vars)
        } else {
            let path = var
                .value_from
                .as_ref()
                .and_then(|from| from.field_ref.as_ref())
                .map(|field| field.field_path.as_str());
            match path {
                Some("metadata.name") => pod.name.clone(),
                Some("metadata.namespace") => NAMESPACE.to_owned(),
                Some("spec.nodeName") => NODE_NAME.to_owned(),
                Some("status.podIP") => pod.ip.to_string(),
                Some("status.hostIP") => pod.host_ip.to_string(),
                None if var.value_from.is_none() => String::new(),
                other => panic!(
                    "env {} has a source this test cannot give: {other:?}",
                    var.name
                ),
            }
        };
        vars.insert(var.name.clone(), value.clone());
        out.push((var.name.clone(), value));
    }
    out
}

/// Rewrites `from` to `to` in `arg` where it is a whole path prefix (followed by `/` or the
/// end, preceded by the start, `=` or `,`): how a remapped mount path reaches the flags.
fn rewrite_prefix(arg: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut copied = 0;
    for (at, _) in arg.match_indices(from) {
        let before_ok = at == 0 || matches!(arg.as_bytes()[at - 1], b'=' | b',');
        let after = &arg[at + from.len()..];
        let after_ok = after.is_empty() || after.starts_with('/') || after.starts_with(',');
        if before_ok && after_ok {
            out.push_str(&arg[copied..at]);
            out.push_str(to);
            copied = at + from.len();
        }
    }
    out.push_str(&arg[copied..]);
    out
}

/// One pod, ready to start.
struct PodPlan {
    net: NetPod,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Readiness and liveness probes: (what, URL).
    probes: Vec<(String, String)>,
}

fn must_container(sts: &StatefulSet) -> (&PodSpec, &Container) {
    let pod = sts
        .spec
        .template
        .spec
        .as_ref()
        .expect("a rendered StatefulSet has a pod template");
    (pod, &pod.containers[0])
}

fn sts_name(sts: &StatefulSet) -> &str {
    sts.metadata.name.as_deref().expect("a named StatefulSet")
}

fn replicas(sts: &StatefulSet) -> usize {
    let n = sts.spec.replicas.unwrap_or(1);
    usize::try_from(n).expect("replicas are not negative")
}

/// `<pod>.<peer-service>.<ns>.svc`: a pod's stable DNS name.
fn pod_dns(sts: &StatefulSet, pod: &str) -> String {
    let svc = sts.spec.service_name.as_deref();
    format!("{pod}.{}.{NAMESPACE}.svc", svc.expect("a peer Service"))
}

/// The name forms a pod in the namespace may use for `fqdn` (`a.b.<ns>.svc`): itself, with
/// `.cluster.local`, and without `.svc` and `.<ns>.svc`.
fn name_forms(fqdn: &str) -> Vec<String> {
    let short = fqdn.trim_end_matches(".svc");
    let shorter = short.trim_end_matches(&format!(".{NAMESPACE}"));
    vec![
        fqdn.to_owned(),
        format!("{fqdn}.cluster.local"),
        short.to_owned(),
        shorter.to_owned(),
    ]
}

/// Hosts entries: every pod's names, and each client Service's names on the first pod it selects.
fn hosts_entries(r: &Rendered, net: &[NetPod]) -> Vec<(Ipv4Addr, Vec<String>)> {
    let ip_of = |pod: &str| net.iter().find(|p| p.name == pod).map(|p| p.ip);
    let mut entries: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for sts in &r.stateful_sets {
        for ordinal in 0..replicas(sts) {
            let pod = format!("{}-{ordinal}", sts_name(sts));
            let ip = ip_of(&pod).expect("every pod has an address");
            entries
                .entry(ip)
                .or_default()
                .extend(name_forms(&pod_dns(sts, &pod)));
        }
    }
    for svc in &r.services {
        let spec = svc.spec.as_ref().expect("a Service has a spec");
        if spec.cluster_ip.as_deref() == Some("None") {
            continue; // headless: its names are the pods' own
        }
        let selector = spec.selector.clone().unwrap_or_default();
        let selected = r.stateful_sets.iter().find(|sts| {
            let labels = sts.spec.template.metadata.as_ref();
            let labels = labels.and_then(|m| m.labels.clone()).unwrap_or_default();
            !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        });
        let sts = selected.expect("a client Service selects a StatefulSet's pods");
        let name = svc.metadata.name.as_deref().expect("a named Service");
        let ip = ip_of(&format!("{}-0", sts_name(sts))).expect("the first pod has an address");
        entries
            .entry(ip)
            .or_default()
            .extend(name_forms(&format!("{name}.{NAMESPACE}.svc")));
    }
    entries.into_iter().collect()
}

/// The URL a probe's `httpGet` asks, on the pod's address.
fn probe_url(probe: &Probe, c: &Container, ip: Ipv4Addr) -> String {
    let get = probe
        .http_get
        .as_ref()
        .expect("the rendered probes are httpGet");
    assert_eq!(get.scheme.as_deref().unwrap_or("HTTP"), "HTTP");
    let port = match &get.port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("probe port {name} is not a container port"))
                .container_port
        }
    };
    format!("http://{ip}:{port}{}", get.path.as_deref().unwrap_or("/"))
}

/// Writes the pod's volumes under `root` and decides how each reaches the pod: bind-mounted at
/// its mount path, or (mount path unusable here) remapped with the flags rewritten.
fn must_volumes(
    r: &Rendered,
    sts: &StatefulSet,
    net: &mut PodNet,
    root: &Path,
    args: &mut [String],
) -> Vec<BindMount> {
    let (pod, c) = must_container(sts);
    let claims: Vec<String> = sts
        .spec
        .volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|claim| claim.metadata.name.clone())
        .collect();
    let mut mounts = Vec::new();
    for mount in c.volume_mounts.iter().flatten() {
        let dir = root.join(&mount.name);
        std::fs::create_dir_all(&dir).expect("create the volume directory");
        let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name);
        if let Some(source) = volume.and_then(|v| v.config_map.as_ref()) {
            let cm = r
                .config_maps
                .iter()
                .find(|cm| cm.metadata.name.as_deref() == Some(source.name.as_str()))
                .unwrap_or_else(|| panic!("ConfigMap {} is not rendered", source.name));
            for (key, text) in cm.data.iter().flatten() {
                std::fs::write(dir.join(key), text).expect("write a ConfigMap file");
            }
        } else if !claims.contains(&mount.name) {
            panic!("volume {} is neither a ConfigMap nor a claim", mount.name);
        }
        let target = PathBuf::from(&mount.mount_path);
        match net.mount_point(&target) {
            Ok(()) => mounts.push(BindMount {
                source: dir,
                target,
                read_only: mount.read_only.unwrap_or(false),
            }),
            Err(e) => {
                let to = dir.display().to_string();
                println!("REMAPPED: {} -> {to} ({e})", mount.mount_path);
                for arg in args.iter_mut() {
                    *arg = rewrite_prefix(arg, &mount.mount_path, &to);
                }
            }
        }
    }
    mounts
}

/// Everything the test started; dropping it stops the processes first, then removes the
/// namespaces, bridge and host directories, then the pods' files.
struct Pods {
    nodes: Vec<Node>,
    net: Option<PodNet>,
    dir: Option<TempDir>,
}

impl Pods {
    fn log_tails(&self) -> String {
        self.nodes.iter().map(|n| n.log_tail(30)).collect()
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill_blocking();
        }
        self.net.take();
        self.dir.take();
    }
}

/// Network, hosts files, volumes and plans for every pod, plus the client pod's namespace.
fn must_plan(r: &Rendered, bins: &Binaries) -> (Pods, Vec<PodPlan>, NetPod) {
    let dir = tempfile::Builder::new()
        .prefix("rendered-pods-")
        .tempdir()
        .expect("temp dir");
    let mut pods = Pods {
        nodes: Vec::new(),
        net: Some(PodNet::create().expect("create the bridge")),
        dir: None,
    };
    let net = pods.net.as_mut().expect("just set");
    for sts in &r.stateful_sets {
        for ordinal in 0..replicas(sts) {
            let name = format!("{}-{ordinal}", sts_name(sts));
            net.add_pod(&name).expect("create the pod's namespace");
        }
    }
    let client = net.add_pod("kvcheck-client").expect("client namespace");
    let entries = hosts_entries(r, net.pods());
    net.write_hosts(&entries).expect("write the hosts files");
    let mut plans = Vec::new();
    for sts in &r.stateful_sets {
        for ordinal in 0..replicas(sts) {
            let name = format!("{}-{ordinal}", sts_name(sts));
            plans.push(must_pod_plan(
                r,
                sts,
                &name,
                net,
                bins,
                &dir.path().join(&name),
            ));
        }
    }
    pods.dir = Some(dir);
    (pods, plans, client)
}

/// How pod `name` of `sts` runs: its expanded command line and env, wrapped to run in its
/// namespaces with its volumes (kept under `root`), and its probe URLs.
fn must_pod_plan(
    r: &Rendered,
    sts: &StatefulSet,
    name: &str,
    net: &mut PodNet,
    bins: &Binaries,
    root: &Path,
) -> PodPlan {
    let (_, c) = must_container(sts);
    let pod_net = net.pods().iter().find(|p| p.name == name).cloned();
    let pod_net = pod_net.expect("every pod has a namespace");
    let facts = PodFacts {
        name: name.to_owned(),
        ip: pod_net.ip,
        host_ip: net.host_ip(),
    };
    let env = must_env(c.env.as_deref().unwrap_or_default(), &facts);
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let mut argv: Vec<String> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(|a| expand(a, &vars))
        .collect();
    assert!(!argv.is_empty(), "{name}: the container names no command");
    let program = bins
        .for_command(&argv.remove(0))
        .unwrap_or_else(|| panic!("{name}: command is not a binary of this workspace"))
        .to_path_buf();
    let mounts = must_volumes(r, sts, net, root, &mut argv);
    let (wrapper, wrapped) = netns::command(&pod_net, &mounts, &program, &argv);
    let probes = [
        ("readiness", &c.readiness_probe),
        ("liveness", &c.liveness_probe),
    ]
    .into_iter()
    .filter_map(|(what, p)| {
        let p = p.as_ref()?;
        Some((format!("{name} {what}"), probe_url(p, c, pod_net.ip)))
    })
    .collect();
    let line = argv.join(" ");
    println!("{name} ({}): {} {line}", pod_net.ip, program.display());
    PodPlan {
        net: pod_net,
        program: wrapper,
        args: wrapped,
        env,
        probes,
    }
}

/// Waits for every probe URL in `probes` to answer 2xx.
async fn must_probes_pass(pods: &Pods, probes: &[(String, String)]) {
    let http = PdHttp::default();
    for (what, url) in probes {
        let probe = || {
            let http = http.clone();
            async move { http.send(reqwest::Method::GET, url).await.map(drop) }
        };
        if let Err(err) = wait_for(what, READY_LIMIT, probe, || pods.log_tails()).await {
            panic!("probe {what} ({url}) never answered 2xx: {err}");
        }
        println!("probe {what}: GET {url} answered 2xx");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_pods_boot_a_working_cluster() {
    e2e::init_test_tracing();
    let skip = tokio::task::spawn_blocking(netns::skip_reason)
        .await
        .expect("skip check");
    if let Some(reason) = skip {
        e2e::testing::skip("rendered_pods", &reason);
        return;
    }
    with_deadline(TEST_LIMIT, run()).await;
}

async fn run() {
    let tc = cluster();
    let r = std::sync::Arc::new(must_render(&tc));
    assert_eq!(r.stateful_sets.len(), Component::ALL.len());
    let bins = Binaries::locate().expect("binaries built");
    let kvcheck = Binaries::other("kvcheck").expect("kvcheck built");
    let (mut pods, plans, client) = {
        let r = r.clone();
        tokio::task::spawn_blocking(move || must_plan(&r, &bins))
            .await
            .expect("set up the pods")
    };
    for plan in &plans {
        let dir = pods.dir.as_ref().expect("set").path();
        let log = dir.join(format!("{}.log", plan.net.name));
        let mut node = Node::new(plan.net.name.clone(), plan.program.clone(), log);
        node.set_env(plan.env.clone());
        node.spawn(&plan.args).expect("start the pod's process");
        pods.nodes.push(node);
    }
    must_probes_pass(&pods, &probes(&plans, "readiness")).await;
    must_placement_see_the_stores(&r, &plans, &pods).await;
    must_probes_pass(&pods, &probes(&plans, "liveness")).await;
    let endpoint = placement_endpoint(&tc).expect("client endpoint");
    must_client_pod_pass(&client, &kvcheck, &endpoint, &pods).await;
    for node in &mut pods.nodes {
        if let Some(status) = node.exited() {
            panic!("{}", node.exited_error(status));
        }
    }
    // Teardown runs commands and waits on children: off the runtime's threads.
    tokio::task::spawn_blocking(move || drop(pods))
        .await
        .expect("tear down the pods");
}

/// Every pod's probes of one kind (`readiness`, `liveness`).
fn probes(plans: &[PodPlan], kind: &str) -> Vec<(String, String)> {
    plans
        .iter()
        .flat_map(|p| p.probes.iter().filter(|(w, _)| w.ends_with(kind)).cloned())
        .collect()
}

/// Placement's HTTP API, asked at the first placement pod's address over the bridge, lists
/// every store pod `Up` under its DNS name, and every region has a leader.
async fn must_placement_see_the_stores(r: &Rendered, plans: &[PodPlan], pods: &Pods) {
    let find = |c: Component| {
        let sts = r.stateful_sets.iter();
        let mut sts = sts.filter(|s| {
            s.spec
                .template
                .spec
                .as_ref()
                .is_some_and(|p| p.containers[0].name == c.as_str())
        });
        sts.next().expect("a StatefulSet per component")
    };
    let (placement, stores) = (find(Component::Placement), find(Component::Store));
    let pd_pod = format!("{}-0", sts_name(placement));
    let pd_ip = plans
        .iter()
        .find(|p| p.net.name == pd_pod)
        .expect("placement pod 0")
        .net
        .ip;
    let pd = format!("{pd_ip}:{}", Component::Placement.ports()[0].1);
    let grpc = Component::Store.ports()[0].1;
    let expected: Vec<String> = (0..replicas(stores))
        .map(|i| {
            format!(
                "{}:{grpc}",
                pod_dns(stores, &format!("{}-{i}", sts_name(stores)))
            )
        })
        .collect();
    let http = PdHttp::default();
    let ready = || {
        let (http, pd, expected) = (http.clone(), pd.clone(), expected.clone());
        async move {
            let stores = http.stores(&pd).await?;
            let regions = http.regions(&pd).await?;
            check_ready(&stores, &regions, &expected)?;
            if stores.len() != expected.len() {
                return Err(format!(
                    "expected {} stores, placement has {stores:?}",
                    expected.len()
                ));
            }
            Ok((stores, regions))
        }
    };
    let what = "every store Up, every region led";
    let (stores, regions) = match wait_for(what, READY_LIMIT, ready, || pods.log_tails()).await {
        Ok(seen) => seen,
        Err(err) => panic!("{err}"),
    };
    for s in &stores {
        println!(
            "placement: store {} at {} is {}",
            s.id, s.address, s.state_name
        );
    }
    println!("placement: {} region(s), each with a leader", regions.len());
}

/// Runs `kvcheck` in the client pod's namespace against `endpoint`; it must exit 0.
async fn must_client_pod_pass(client: &NetPod, kvcheck: &Path, endpoint: &str, pods: &Pods) {
    let limit = format!("--timeout-secs={}", CLIENT_LIMIT.as_secs() - 20);
    let args = [format!("--pd={endpoint}"), limit];
    let (program, args) = netns::command(client, &[], kvcheck, &args);
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&args).stdin(Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(CLIENT_LIMIT, cmd.output()).await {
        Ok(out) => out.expect("run kvcheck"),
        Err(_) => panic!(
            "kvcheck did not finish within {CLIENT_LIMIT:?}\n{}",
            pods.log_tails()
        ),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "kvcheck failed ({}):\n{stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        pods.log_tails()
    );
}

#[test]
fn env_values_come_from_the_downward_api_and_earlier_vars() {
    let tc = cluster();
    let r = must_render(&tc);
    let (_, c) = must_container(&r.stateful_sets[0]);
    let mut env = c.env.clone().unwrap_or_default();
    env.push(EnvVar {
        name: "GREETING".into(),
        value: Some("hello $(POD_NAME) in $(POD_NAMESPACE)".into()),
        ..EnvVar::default()
    });
    let facts = PodFacts {
        name: "basic-placement-0".into(),
        ip: Ipv4Addr::new(10, 213, 9, 10),
        host_ip: Ipv4Addr::new(10, 213, 9, 1),
    };
    let got: BTreeMap<_, _> = must_env(&env, &facts).into_iter().collect();
    assert_eq!(got["POD_NAME"], "basic-placement-0");
    assert_eq!(got["POD_NAMESPACE"], NAMESPACE);
    assert_eq!(got["NODE_NAME"], NODE_NAME);
    assert_eq!(got["GREETING"], "hello basic-placement-0 in db");
}

#[test]
fn remapping_rewrites_only_the_path_prefix() {
    let to = "/tmp/x/data";
    assert_eq!(
        rewrite_prefix("--data-dir=/var/lib/store", "/var/lib/store", to),
        "--data-dir=/tmp/x/data"
    );
    assert_eq!(
        rewrite_prefix("--config=/etc/store/store.toml", "/etc/store", "/tmp/c"),
        "--config=/tmp/c/store.toml"
    );
    assert_eq!(
        rewrite_prefix("/etc/store", "/etc/store", "/tmp/c"),
        "/tmp/c"
    );
    assert_eq!(
        rewrite_prefix("--x=/etc/storefront,/a/etc/store", "/etc/store", "/tmp/c"),
        "--x=/etc/storefront,/a/etc/store"
    );
    assert_eq!(
        rewrite_prefix("--addr=0.0.0.0:20160", "/etc/store", "/tmp/c"),
        "--addr=0.0.0.0:20160"
    );
}

#[test]
fn hosts_name_every_pod_and_client_service() {
    let tc = cluster();
    let r = must_render(&tc);
    let mut net = Vec::new();
    for sts in &r.stateful_sets {
        for i in 0..replicas(sts) {
            let host = u8::try_from(10 + net.len()).unwrap();
            net.push(NetPod {
                name: format!("{}-{i}", sts_name(sts)),
                netns: String::new(),
                ip: Ipv4Addr::new(10, 213, 9, host),
            });
        }
    }
    let entries = hosts_entries(&r, &net);
    let lookup = |name: &str| {
        entries
            .iter()
            .find(|(_, names)| names.iter().any(|n| n == name))
            .map(|(ip, _)| *ip)
    };
    let pd0 = net
        .iter()
        .find(|p| p.name == "basic-placement-0")
        .unwrap()
        .ip;
    let endpoint = placement_endpoint(&tc).unwrap();
    let host = endpoint
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap();
    assert_eq!(lookup(host), Some(pd0));
    assert_eq!(
        lookup("basic-placement-0.basic-placement-peer.db.svc"),
        Some(pd0)
    );
    let s2 = net.iter().find(|p| p.name == "basic-store-2").unwrap().ip;
    assert_eq!(lookup("basic-store-2.basic-store-peer.db.svc"), Some(s2));
    assert_eq!(
        lookup("basic-store-2.basic-store-peer.db.svc.cluster.local"),
        Some(s2)
    );
    assert_eq!(lookup("basic-store-3.basic-store-peer.db.svc"), None);
}
