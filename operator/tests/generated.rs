//! Generated artefacts are committed and must match the code: the CRD in `crds/` and its copy
//! in the chart are exactly `crdgen`'s output, and the chart, the install manifest and the
//! example clusters pass `validate_chart.py` (real Helm library, Kubernetes schemas).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

fn root() -> PathBuf {
    // At run time first: a shared build directory may hold a binary built in another checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("..")
}

fn must_read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn crds_match_crdgen_output() {
    let generated = operator::crd_yaml().unwrap();
    for rel in [
        "crds/tikvclusters.yaml",
        "charts/tikv-operator/crds/tikvclusters.yaml",
    ] {
        let committed = must_read(&root().join(rel));
        assert!(
            committed == generated,
            "{rel} drifted from the CRD types; regenerate with\n  \
             cargo run -p operator --bin crdgen > crds/tikvclusters.yaml && \
             cp crds/tikvclusters.yaml charts/tikv-operator/crds/"
        );
    }
}

/// Writes what the builders produce for each example cluster, for Kubernetes-schema checks.
fn must_write_builder_objects(dir: &Path) {
    for example in ["tikvcluster-minimal.yaml", "tikvcluster-zones.yaml"] {
        let text = must_read(&root().join("manifests").join(example));
        let mut tc: operator::crd::TikvCluster = serde_yaml::from_str(&text).unwrap();
        tc.metadata
            .namespace
            .get_or_insert_with(|| "default".into());
        tc.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
        for (i, obj) in operator::builders::objects(&tc).unwrap().iter().enumerate() {
            let file = dir.join(format!("{example}-{i:02}.json"));
            std::fs::write(file, serde_json::to_vec_pretty(obj).unwrap()).unwrap();
        }
    }
}

#[test]
fn chart_and_manifests_validate_with_helm_and_kubernetes_schemas() {
    let dir = std::env::temp_dir().join(format!("operator-objects-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    must_write_builder_objects(&dir);
    let script = root().join("operator/tests/validate_chart.py");
    let out = match Command::new("python3")
        .arg(&script)
        .arg("--objects")
        .arg(&dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            println!("SKIPPED: python3 not runnable: {e}");
            return;
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    match out.status.code() {
        Some(0) => {}
        Some(2) => println!(
            "SKIPPED: {} (pip install helm-python-sdk kubernetes-validate jsonschema pyyaml)",
            stderr.trim()
        ),
        _ => panic!("validate_chart.py failed:\n{stdout}\n{stderr}"),
    }
}

#[test]
fn install_manifest_deployment_args_parse_with_the_binarys_flags() {
    use clap::Parser;
    let text = must_read(&root().join("manifests/tikv-operator.yaml"));
    let deployment = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .find(|d| d["kind"] == "Deployment")
        .expect("the install manifest has a Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"][0], "/usr/local/bin/operator");
    let args: Vec<String> = serde_yaml::from_value(container["args"].clone()).unwrap();
    let parsed =
        operator::cli::Args::try_parse_from(std::iter::once("operator".to_owned()).chain(args))
            .unwrap_or_else(|e| panic!("chart args do not parse: {e}"));
    assert!(parsed.leader_elect);
    assert_eq!(
        parsed.placement_topology_cluster_role.as_deref(),
        Some("tikv-operator-placement-topology")
    );
    assert_eq!(parsed.metrics_addr.port(), 8080);
}
