//! The official Java client, `org.tikv:tikv-client-java` 3.3.5 from Maven Central (its newest
//! release), against a cluster of 3 placement members and 3 stores.
//!
//! `e2e/java` is a small Maven project whose `JavaClientCheck` program follows the client's
//! documented examples: RawKV put/get/batch get/scan/delete/delete range, then a transactional
//! two-phase commit of two keys read back with the transactional KV client (and invisible to an
//! older snapshot). It is built once per source hash (`mvn package`, dependencies copied beside
//! the classes) into the client cache (see `e2e::foreign`) and run with `java`. Where Java or
//! Maven is missing the test prints SKIPPED with the reason and passes.

use std::time::Duration;

use e2e::foreign::{cached_build, must_succeed, output_text, run_bounded, tool_unavailable};
use e2e::testing::serial;
use e2e::{with_deadline, ClusterBuilder};
use tokio::process::Command;

/// Resolving the client and its dependencies from Maven Central on a fresh machine.
const BUILD_LIMIT: Duration = Duration::from_secs(900);
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// Why the Java suite cannot run here, or `None`.
async fn java_unavailable() -> Option<String> {
    if let Some(reason) = tool_unavailable("java", &["-version"]).await {
        return Some(reason);
    }
    tool_unavailable("mvn", &["-v"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_client_raw_and_transactions() {
    e2e::init_test_tracing();
    if let Some(reason) = java_unavailable().await {
        e2e::testing::skip("java_client_raw_and_transactions", &reason);
        return;
    }
    let built = cached_build("java", "build", |dir, out| async move {
        let mut mvn = Command::new("mvn");
        mvn.arg("-q")
            .arg("-B")
            .arg("-f")
            .arg(dir.join("pom.xml"))
            .arg(format!("-DbuildDir={}", out.display()))
            .arg("package");
        must_succeed("mvn package (e2e/java)", mvn, BUILD_LIMIT).await
    })
    .await
    .unwrap_or_else(|e| panic!("building the Java client check failed: {e}"));
    let _serial = serial().await;
    with_deadline(Duration::from_secs(300), async {
        let cluster = ClusterBuilder::default()
            .placements(3)
            .stores(3)
            .must_start()
            .await;
        cluster.must_settled(3, Duration::from_secs(60)).await;
        e2e::must_serve(&cluster, Duration::from_secs(60)).await;
        let classpath = format!(
            "{}:{}/*",
            built.join("classes").display(),
            built.join("dependency").display()
        );
        let mut java = Command::new("java");
        java.arg("-cp")
            .arg(classpath)
            .arg("dev.ferrokv.e2e.JavaClientCheck")
            .env("FERROKV_PD", cluster.pd_endpoints().join(","));
        let out = run_bounded("the Java client check", java, RUN_LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tails()));
        let text = output_text(&out);
        eprintln!("{text}");
        assert!(
            out.status.success() && text.contains("JAVA CLIENT OK"),
            "the Java client check failed ({}):\n{text}\n{}",
            out.status,
            cluster.log_tails()
        );
    })
    .await
}
