//! The container images `scripts/images.sh` builds, run as the operator's pods run them.
//!
//! Builds both images from this test run's debug binaries (`scripts/images.sh --debug`, under a
//! tag of its own so released tags are left alone), checks that each binary starts in its
//! image as the non-root user (`--version`, `--help`, the operator on a read-only root file
//! system as the chart runs it), then starts one placement and one store as containers on a
//! network the test creates, with the flags the operator renders (pod DNS names replaced by
//! container names), and waits until placement's PD HTTP API reports the store `Up` at its
//! advertised address. Then a raw put and get through the official client (`raw-probe`, in a
//! test-only image on top of the operator image) from a container on that network, where the
//! advertised addresses resolve. Containers and the network are removed on drop; the images
//! stay.
//!
//! Without a Docker engine the test prints `SKIPPED: <reason>` and passes.

use std::time::Duration;

use e2e::docker::{self, Container, Network, FERROKV_REPO, OPERATOR_REPO, QUICK};
use e2e::pd_api::PdHttp;
use e2e::{wait_for, with_deadline};

/// Tag of the images this test builds.
const TAG: &str = "e2e";
/// Building the images: a debug build of what is stale (the operator, at worst) and two
/// `docker build`s.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);
/// Placement up and the store registered and `Up`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(120);
/// `raw-probe` retries for a minute; this bounds the container around it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// Placement's flags as the operator renders them for member `name`, reachable as `name` on
/// the test's network.
fn placement_args(name: &str) -> Vec<String> {
    vec![
        "/usr/local/bin/placement".into(),
        format!("--name={name}"),
        "--client-urls=http://0.0.0.0:2379".into(),
        format!("--advertise-client-urls=http://{name}:2379"),
        "--peer-urls=http://0.0.0.0:2380".into(),
        format!("--advertise-peer-urls=http://{name}:2380"),
        format!("--initial-cluster={name}=http://{name}:2380"),
        "--data-dir=/var/lib/placement".into(),
    ]
}

/// A store's flags as the operator renders them, dialling placement `pd`.
fn store_args(name: &str, pd: &str) -> Vec<String> {
    vec![
        "/usr/local/bin/store".into(),
        format!("--pd-endpoints=http://{pd}:2379"),
        "--addr=0.0.0.0:20160".into(),
        format!("--advertise-addr={name}:20160"),
        "--status-addr=0.0.0.0:20180".into(),
        "--data-dir=/var/lib/store".into(),
    ]
}

async fn must_docker(args: &[&str]) -> String {
    docker::run(args, QUICK)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_run_a_cluster() {
    e2e::init_test_tracing();
    if let Some(reason) = docker::unavailable().await {
        eprintln!("SKIPPED: images_run_a_cluster: {reason}");
        return;
    }
    with_deadline(BUILD_TIMEOUT + Duration::from_secs(300), async {
        let built = docker::build_images(TAG, BUILD_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("scripts/images.sh failed: {e}"));
        let ferrokv = format!("{FERROKV_REPO}:{TAG}");
        let operator = format!("{OPERATOR_REPO}:{TAG}");
        // A tag that is no version gets no `v` alias.
        assert_eq!(
            built,
            [ferrokv.clone(), operator.clone()],
            "images the script built"
        );

        // Every binary starts in its image, as the non-root user the pods run as.
        let version = env!("CARGO_PKG_VERSION");
        for bin in ["placement", "store"] {
            let path = format!("/usr/local/bin/{bin}");
            let out = must_docker(&["run", "--rm", &ferrokv, &path, "--version"]).await;
            assert_eq!(out, format!("{bin} {version}"));
        }
        let out = must_docker(&["run", "--rm", &operator, "--version"]).await;
        assert_eq!(out, format!("operator {version}"));
        // As the chart runs it: its own command path, uid 65532, read-only root file system.
        let out = must_docker(&[
            "run",
            "--rm",
            "--read-only",
            "--user=65532:65532",
            "--entrypoint=/usr/local/bin/operator",
            &operator,
            "--help",
        ])
        .await;
        assert!(out.contains("--metrics-addr"), "operator --help: {out}");
        for image in [&ferrokv, &operator] {
            let user =
                must_docker(&["image", "inspect", "--format", "{{.Config.User}}", image]).await;
            assert_eq!(user, "65532:65532", "{image} runs as");
        }

        // One placement and one store on a network of their own.
        let network = Network::create(docker::unique_name("ferrokv-e2e"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pd_name = format!("{}-pd", network.name);
        let store_name = format!("{}-store", network.name);
        let net = format!("--network={}", network.name);
        let pd = Container::start(
            pd_name.clone(),
            &[&net, "--publish=127.0.0.1::2379"],
            &ferrokv,
            &placement_args(&pd_name),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let store = Container::start(
            store_name.clone(),
            &[&net],
            &ferrokv,
            &store_args(&store_name, &pd_name),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let pd_addr = pd
            .published("2379/tcp")
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let http = PdHttp::default();
        let advertised = format!("{store_name}:20160");
        let waited = wait_for(
            "the store Up in placement",
            CLUSTER_TIMEOUT,
            || async {
                let stores = http.stores(&pd_addr).await?;
                match stores.as_slice() {
                    [s] if s.state_name == "Up" && s.address == advertised => Ok(s.id),
                    other => Err(format!("stores: {other:?}")),
                }
            },
            String::new,
        )
        .await;
        let logs = format!("{}\n{}", pd.logs(40).await, store.logs(40).await);
        match waited {
            Ok(id) => assert!(id > 0, "store id {id}\n{logs}"),
            Err(e) => panic!("{e}\n{logs}"),
        }
        // The official client, from inside the network where the advertised addresses resolve.
        let probe = docker::build_probe_image(
            std::path::Path::new(env!("CARGO_BIN_EXE_raw-probe")),
            &operator,
            TAG,
        )
        .await
        .unwrap_or_else(|e| panic!("build the probe image: {e}"));
        let value = docker::unique_name("v");
        let pd_url = format!("http://{pd_name}:2379");
        let put_get = docker::run(
            &["run", "--rm", &net, &probe, &pd_url, "probe-key", &value],
            PROBE_TIMEOUT,
        )
        .await;
        match put_get {
            Ok(out) => assert_eq!(out, format!("ok probe-key={value}")),
            Err(e) => panic!("raw put/get: {e}\n{logs}"),
        }
        http.health(&pd_addr)
            .await
            .unwrap_or_else(|e| panic!("placement health: {e}\n{logs}"));
        // Drops remove the store, placement, then the network.
        drop((store, pd));
        drop(network);
    })
    .await
}
