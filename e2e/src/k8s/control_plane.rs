//! A real Kubernetes control plane on this machine: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler as child processes, started the way
//! controller-runtime's envtest starts its API server (throwaway CA, serving certificate,
//! service-account signer) plus the two controllers, with `--authorization-mode=Node,RBAC` so
//! that every client other than the admin gets exactly what RBAC grants it.
//!
//! Every `kubectl` and `helm` the harness runs carries `--kubeconfig` naming a file in the
//! control plane's own directory (and runs with `KUBECONFIG` set to it), so nothing here reads
//! or changes a cluster or kubeconfig the test did not create. [`ControlPlane`] kills its
//! processes on drop.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use super::pki::{subject_alt_names, KeyPair, Pki};
use super::tools::Tools;
use crate::docker::run_program;
use crate::error::{Error, Result};
use crate::ports::free_port;
use crate::process::Node;
use crate::wait::wait_for;

/// The Service network (the `kubernetes` Service takes its first address).
pub const SERVICE_CIDR: &str = "10.0.0.0/24";
/// How long one kubectl or helm command may run.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// How long a node may miss heartbeats before the controller manager marks it NotReady.
pub const NODE_MONITOR_GRACE: Duration = Duration::from_secs(20);
/// How long the control plane may take to come up.
const START_LIMIT: Duration = Duration::from_secs(180);

/// A running control plane.
pub struct ControlPlane {
    dir: PathBuf,
    tools: Tools,
    pki: Pki,
    /// `https://<address>:<port>` of the API server.
    server: String,
    admin: PathBuf,
    etcd: Node,
    apiserver: Node,
    controller_manager: Node,
    scheduler: Node,
}

/// A kubeconfig file for `server` trusting `ca`, authenticating with `user` (a client
/// certificate or a bearer token), as JSON (which is YAML).
pub fn kubeconfig(server: &str, ca: &Path, user: &Credentials) -> String {
    let user = match user {
        Credentials::Certificate(pair) => json!({
            "client-certificate": pair.cert,
            "client-key": pair.key,
        }),
        Credentials::Token(token) => json!({ "token": token }),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "test", "cluster": {
            "server": server,
            "certificate-authority": ca,
        }}],
        "users": [{ "name": "test", "user": user }],
        "contexts": [{ "name": "test", "context": { "cluster": "test", "user": "test" }}],
        "current-context": "test",
    });
    serde_json::to_string_pretty(&config).unwrap_or_default()
}

/// How a kubeconfig's user proves who it is.
pub enum Credentials {
    Certificate(KeyPair),
    Token(String),
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io(path, e))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

impl ControlPlane {
    /// Starts etcd, the API server (serving on `address`, which pods in network namespaces
    /// must be able to reach: the host's bridge address, or loopback when none run),
    /// the controller manager and the scheduler in `dir`, and waits until the API server is
    /// ready and the controller manager has published the cluster's root CA.
    pub async fn start(tools: &Tools, dir: &Path, address: Ipv4Addr) -> Result<ControlPlane> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let pki = Pki::create(&dir.join("pki"))?;
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let service_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let serving = pki.serving(
            "apiserver",
            &subject_alt_names(
                &[loopback, IpAddr::V4(address), service_ip],
                &[
                    "localhost",
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                ],
            ),
        )?;
        let secure_port = free_port()?;
        let server = format!("https://{address}:{secure_port}");
        let admin = dir.join("admin.kubeconfig");
        let admin_cert = pki.client("admin", "admin", &["system:masters"])?;
        write(
            &admin,
            &kubeconfig(&server, &pki.ca.cert, &Credentials::Certificate(admin_cert)),
        )?;
        let mut plane = ControlPlane {
            dir: dir.to_path_buf(),
            tools: tools.clone(),
            server: server.clone(),
            admin,
            etcd: Node::new("etcd", tools.bin("etcd"), dir.join("etcd.log")),
            apiserver: Node::new(
                "kube-apiserver",
                tools.bin("kube-apiserver"),
                dir.join("kube-apiserver.log"),
            ),
            controller_manager: Node::new(
                "kube-controller-manager",
                tools.bin("kube-controller-manager"),
                dir.join("kube-controller-manager.log"),
            ),
            scheduler: Node::new(
                "kube-scheduler",
                tools.bin("kube-scheduler"),
                dir.join("kube-scheduler.log"),
            ),
            pki,
        };

        let (client_port, peer_port) = (free_port()?, free_port()?);
        let etcd_client = format!("http://127.0.0.1:{client_port}");
        let etcd_peer = format!("http://127.0.0.1:{peer_port}");
        plane.etcd.spawn(&[
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_client}"),
            format!("--advertise-client-urls={etcd_client}"),
            format!("--listen-peer-urls={etcd_peer}"),
            format!("--initial-advertise-peer-urls={etcd_peer}"),
            format!("--initial-cluster=default={etcd_peer}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ])?;

        let p = &plane.pki;
        plane.apiserver.spawn(&[
            format!("--etcd-servers={etcd_client}"),
            format!("--bind-address={address}"),
            format!("--advertise-address={address}"),
            format!("--secure-port={secure_port}"),
            format!("--tls-cert-file={}", serving.cert.display()),
            format!("--tls-private-key-file={}", serving.key.display()),
            format!("--client-ca-file={}", p.ca.cert.display()),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", p.sa_pub.display()),
            format!("--service-account-signing-key-file={}", p.sa_key.display()),
            "--authorization-mode=Node,RBAC".to_owned(),
            "--enable-admission-plugins=NodeRestriction".to_owned(),
            "--allow-privileged=true".to_owned(),
            "--profiling=false".to_owned(),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
        ])?;
        plane.wait_ready().await?;

        let kcm = plane
            .component_kubeconfig("kube-controller-manager", "system:kube-controller-manager")?;
        let p = &plane.pki;
        plane.controller_manager.spawn(&[
            format!("--kubeconfig={}", kcm.display()),
            format!("--authentication-kubeconfig={}", kcm.display()),
            format!("--authorization-kubeconfig={}", kcm.display()),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={}", free_port()?),
            "--leader-elect=false".to_owned(),
            "--use-service-account-credentials=true".to_owned(),
            format!("--service-account-private-key-file={}", p.sa_key.display()),
            format!("--root-ca-file={}", p.ca.cert.display()),
            format!("--cluster-signing-cert-file={}", p.ca.cert.display()),
            format!("--cluster-signing-key-file={}", p.ca.key.display()),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--allocate-node-cidrs=false".to_owned(),
            // A node whose Lease stops is NotReady after this (upstream default 50 s): the
            // node-failure step need not wait as long.
            format!(
                "--node-monitor-grace-period={}s",
                NODE_MONITOR_GRACE.as_secs()
            ),
            "--profiling=false".to_owned(),
        ])?;
        let sched = plane.component_kubeconfig("kube-scheduler", "system:kube-scheduler")?;
        plane.scheduler.spawn(&[
            format!("--kubeconfig={}", sched.display()),
            format!("--authentication-kubeconfig={}", sched.display()),
            format!("--authorization-kubeconfig={}", sched.display()),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={}", free_port()?),
            "--leader-elect=false".to_owned(),
            "--profiling=false".to_owned(),
        ])?;
        let started = Instant::now();
        wait_for(
            "the controller manager to publish kube-root-ca.crt in namespace default",
            START_LIMIT,
            || async {
                plane
                    .kubectl(&[
                        "get",
                        "configmap",
                        "kube-root-ca.crt",
                        "-n",
                        "default",
                        "-o",
                        "name",
                    ])
                    .await
            },
            || plane.logs(),
        )
        .await?;
        tracing::info!(server = %plane.server, took = ?started.elapsed(), "control plane up");
        Ok(plane)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let logs = self.logs();
        let apiserver_exited = |plane: &mut ControlPlane| -> Result<()> {
            for node in [&mut plane.etcd, &mut plane.apiserver] {
                if let Some(status) = node.exited() {
                    return Err(node.exited_error(status));
                }
            }
            Ok(())
        };
        let deadline = Instant::now() + START_LIMIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            apiserver_exited(self)?;
            match self.kubectl(&["get", "--raw", "/readyz"]).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(Error::Timeout {
            what: "kube-apiserver /readyz".to_owned(),
            waited: START_LIMIT,
            last,
            logs: format!("{logs}{}", self.logs()),
        })
    }

    /// A kubeconfig for a control-plane component authenticating as `user` (whose
    /// ClusterRoleBinding the API server bootstraps).
    fn component_kubeconfig(&self, name: &str, user: &str) -> Result<PathBuf> {
        self.certificate_kubeconfig(name, user, &[])
    }

    /// A kubeconfig for a node agent: user `system:node:<node>` in group `system:nodes`, which
    /// the Node authorizer and the NodeRestriction admission plugin limit to its own Node and
    /// pods.
    pub fn node_kubeconfig(&self, node: &str) -> Result<PathBuf> {
        self.certificate_kubeconfig(
            &format!("node-{node}"),
            &format!("system:node:{node}"),
            &["system:nodes"],
        )
    }

    /// `<dir>/<name>.kubeconfig` authenticating with a client certificate for `user` in `groups`.
    fn certificate_kubeconfig(&self, name: &str, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let pair = self.pki.client(name, user, groups)?;
        let path = self.dir.join(format!("{name}.kubeconfig"));
        let config = kubeconfig(
            &self.server,
            &self.pki.ca.cert,
            &Credentials::Certificate(pair),
        );
        write(&path, &config)?;
        Ok(path)
    }

    /// A kubeconfig authenticating with a token of ServiceAccount `namespace/name` (issued
    /// through the TokenRequest API, valid an hour): the identity a pod of that account has.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let token = self
            .kubectl(&["create", "token", name, "-n", namespace, "--duration=1h"])
            .await
            .map_err(|reason| Error::Command {
                command: format!("kubectl create token {name} -n {namespace}"),
                reason,
            })?;
        let path = self.dir.join(format!("sa-{namespace}-{name}.kubeconfig"));
        write(
            &path,
            &kubeconfig(&self.server, &self.pki.ca.cert, &Credentials::Token(token)),
        )?;
        Ok(path)
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA every certificate of this control plane chains to.
    pub fn ca_cert(&self) -> &Path {
        &self.pki.ca.cert
    }

    /// The admin (system:masters) kubeconfig.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin
    }

    /// The control plane's directory (certificates, kubeconfigs, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The built binaries.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// `kubectl --kubeconfig <admin> args...`: its trimmed stdout, or an error with its output.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_as(&self.admin, args).await
    }

    /// `kubectl` under another kubeconfig (a ServiceAccount's, a node's).
    pub async fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
        let mut all = vec![format!("--kubeconfig={}", kubeconfig.display())];
        all.extend(strings(args));
        let config = kubeconfig.display().to_string();
        run_program(
            &self.tools.bin("kubectl").display().to_string(),
            &all,
            &[("KUBECONFIG", config.as_str())],
            COMMAND_LIMIT,
        )
        .await
    }

    /// `kubectl apply -f -` of `manifest` (YAML or JSON) as admin.
    pub async fn apply(&self, manifest: &str) -> Result<String, String> {
        let path = self.dir.join(format!(
            "manifest-{}.yaml",
            crate::docker::unique_name("apply")
        ));
        std::fs::write(&path, manifest).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = path.display().to_string();
        self.kubectl(&["apply", "--server-side", "--field-manager=e2e", "-f", &file])
            .await
    }

    /// `helm --kubeconfig <admin> args...`, with helm's caches and config in the control
    /// plane's directory.
    pub async fn helm(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec![format!("--kubeconfig={}", self.admin.display())];
        all.extend(strings(args));
        let config = self.admin.display().to_string();
        let home = self.dir.join("helm");
        let (cache, conf, data) = (
            home.join("cache").display().to_string(),
            home.join("config").display().to_string(),
            home.join("data").display().to_string(),
        );
        run_program(
            &self.tools.bin("helm").display().to_string(),
            &all,
            &[
                ("KUBECONFIG", config.as_str()),
                ("HELM_CACHE_HOME", cache.as_str()),
                ("HELM_CONFIG_HOME", conf.as_str()),
                ("HELM_DATA_HOME", data.as_str()),
            ],
            COMMAND_LIMIT,
        )
        .await
    }

    /// The last lines of every control-plane log.
    pub fn logs(&self) -> String {
        [
            &self.etcd,
            &self.apiserver,
            &self.controller_manager,
            &self.scheduler,
        ]
        .iter()
        .map(|n| n.log_tail(20))
        .collect()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.scheduler.kill_blocking();
        self.controller_manager.kill_blocking();
        self.apiserver.kill_blocking();
        self.etcd.kill_blocking();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfigs_name_the_server_the_ca_and_one_user() {
        let text = kubeconfig(
            "https://127.0.0.1:6443",
            Path::new("/d/ca.crt"),
            &Credentials::Token("t0k".into()),
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["current-context"], "test");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority"],
            "/d/ca.crt"
        );
        assert_eq!(v["users"][0]["user"]["token"], "t0k");
        let cert = kubeconfig(
            "https://h:1",
            Path::new("/ca"),
            &Credentials::Certificate(KeyPair {
                cert: "/c.crt".into(),
                key: "/c.key".into(),
            }),
        );
        let v: serde_json::Value = serde_json::from_str(&cert).unwrap();
        assert_eq!(v["users"][0]["user"]["client-certificate"], "/c.crt");
        assert_eq!(v["users"][0]["user"]["client-key"], "/c.key");
    }
}
