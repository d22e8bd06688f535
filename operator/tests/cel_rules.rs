//! The CRD's CEL rules (`x-kubernetes-validations`), evaluated client-side with kube's CEL
//! validator on the generated schema: the examples pass, and each cross-field rule refuses
//! what it should with its message. The API server evaluates the same rules on `kubectl apply`.

use std::path::PathBuf;

use kube::core::cel::{validate_cel, validate_cel_update};
use operator::crd::TikvCluster;

fn must_example(name: &str) -> TikvCluster {
    // At run time first: a shared build directory may hold a binary built in another checkout.
    let path = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../manifests")
        .join(name);
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn must_refuse(tc: &TikvCluster, needle: &str) {
    let err = validate_cel(tc).expect_err("CEL rules should refuse this cluster");
    let text = format!("{err:?}");
    assert!(text.contains(needle), "expected {needle:?} in {text}");
}

#[test]
fn examples_pass_every_rule() {
    for name in ["tikvcluster-minimal.yaml", "tikvcluster-zones.yaml"] {
        let tc = must_example(name);
        validate_cel(&tc).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}

#[test]
fn fewer_stores_than_max_replicas_is_refused_unless_paused() {
    let mut tc = must_example("tikvcluster-minimal.yaml");
    tc.spec.store.replicas = 2;
    must_refuse(&tc, "store.replicas must be at least maxReplicas");
    tc.spec.paused = true;
    validate_cel(&tc).unwrap();
}

#[test]
fn isolation_level_must_be_a_location_label() {
    let mut tc = must_example("tikvcluster-zones.yaml");
    tc.spec.topology.isolation_level = Some("rack".into());
    must_refuse(&tc, "isolationLevel must be one of locationLabels");
}

#[test]
fn storage_class_cannot_change() {
    let old = must_example("tikvcluster-zones.yaml");
    let mut new = old.clone();
    new.spec.store.common.storage.storage_class_name = Some("slow-hdd".into());
    let err = validate_cel_update(&new, &old).expect_err("storage class change refused");
    assert!(
        format!("{err:?}").contains("storageClassName cannot change"),
        "{err:?}"
    );
    let mut grown = old.clone();
    grown.spec.store.common.storage.size = "1Ti".into();
    validate_cel_update(&grown, &old).unwrap();
}
