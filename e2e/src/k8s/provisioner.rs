//! A volume provisioner for the node agent's cluster, as a test fixture: the StorageClass
//! [`STORAGE_CLASS`] (the default class) and a loop that gives each pending claim of that class
//! a PersistentVolume backed by a host directory of its own, pre-bound to the claim (the
//! controller manager's binder completes the binding), and deletes released volumes whose
//! reclaim policy is `Delete` together with their directories. Directories outlive pods, so a
//! recreated pod finds its data; they are where the node agent mounts the claim.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};

/// The StorageClass this provisioner serves.
pub const STORAGE_CLASS: &str = "local-dir";
/// Its provisioner name.
pub const PROVISIONER: &str = "e2e.ferrokv.io/local-dir";

/// The StorageClass, marked default so claims without a class get it.
pub fn storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..StorageClass::default()
    }
}

/// A StorageClass named `name` that this provisioner serves (tests create such classes for
/// manifests that name their own, e.g. `fast-ssd`).
pub fn class_named(name: &str, reclaim: &str) -> StorageClass {
    let mut class = storage_class();
    class.metadata.name = Some(name.into());
    class.metadata.annotations = None;
    class.reclaim_policy = Some(reclaim.into());
    class
}

/// The volume for `claim` of class `class` (served by this provisioner with reclaim policy
/// `reclaim`), in directory `dir`, or `None` when the claim is not this provisioner's to serve
/// (another class, already bound, being deleted).
pub fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &str,
    dir: &std::path::Path,
    reclaim: &str,
) -> Option<PersistentVolume> {
    let spec = claim.spec.as_ref()?;
    if spec.storage_class_name.as_deref() != Some(class)
        || spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || claim.metadata.deletion_timestamp.is_some()
    {
        return None;
    }
    let uid = claim.metadata.uid.clone()?;
    let size = spec
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?
        .clone();
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("pvc-{uid}")),
            annotations: Some(BTreeMap::from([(
                "pv.kubernetes.io/provisioned-by".to_owned(),
                PROVISIONER.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_owned(), size)])),
            access_modes: spec.access_modes.clone(),
            persistent_volume_reclaim_policy: Some(reclaim.to_owned()),
            storage_class_name: Some(class.into()),
            host_path: Some(HostPathVolumeSource {
                path: dir.join(format!("pvc-{uid}")).display().to_string(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: Some(uid),
                ..ObjectReference::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    })
}

/// Creates the StorageClass, then provisions and reclaims volumes under `dir` until dropped.
pub async fn run(client: Client, dir: PathBuf) {
    let classes: Api<StorageClass> = Api::all(client.clone());
    if let Err(e) = classes
        .create(&PostParams::default(), &storage_class())
        .await
    {
        tracing::warn!(error = %e, "creating the storage class");
    }
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client);
    loop {
        // The classes served: name -> reclaim policy.
        let served: Vec<(String, String)> = match classes.list(&ListParams::default()).await {
            Ok(list) => list
                .items
                .into_iter()
                .filter(|c| c.provisioner == PROVISIONER)
                .map(|c| {
                    let reclaim = c.reclaim_policy.unwrap_or_else(|| "Delete".into());
                    (c.metadata.name.unwrap_or_default(), reclaim)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        if let Ok(list) = claims.list(&ListParams::default()).await {
            for claim in &list.items {
                let class = claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.clone());
                let Some((class, reclaim)) = served.iter().find(|(n, _)| Some(n) == class.as_ref())
                else {
                    continue;
                };
                let Some(pv) = volume_for(claim, class, &dir, reclaim) else {
                    continue;
                };
                if let Some(path) = pv.spec.as_ref().and_then(|s| s.host_path.as_ref()) {
                    let _ = std::fs::create_dir_all(&path.path);
                }
                match volumes.create(&PostParams::default(), &pv).await {
                    Ok(_) => tracing::info!(claim = ?claim.metadata.name, "provisioned"),
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => tracing::warn!(error = %e, "provisioning"),
                }
            }
        }
        if let Ok(list) = volumes.list(&ListParams::default()).await {
            for pv in list.items {
                let spec = pv.spec.clone().unwrap_or_default();
                let released =
                    pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
                let ours = served
                    .iter()
                    .any(|(n, _)| spec.storage_class_name.as_ref() == Some(n));
                if !released
                    || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete")
                    || !ours
                {
                    continue;
                }
                let name = pv.metadata.name.clone().unwrap_or_default();
                if volumes
                    .delete(&name, &DeleteParams::default())
                    .await
                    .is_ok()
                {
                    if let Some(h) = spec.host_path {
                        let _ = std::fs::remove_dir_all(h.path);
                    }
                    tracing::info!(volume = %name, "reclaimed");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, VolumeResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn claim(class: Option<&str>, bound: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data-basic-store-0".into()),
                namespace: Some("db".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: class.map(str::to_owned),
                volume_name: bound.map(str::to_owned),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        Quantity("10Gi".into()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }
    }

    #[test]
    fn a_pending_claim_of_a_served_class_gets_a_prebound_directory_volume() {
        let dir = std::path::Path::new("/pv");
        let pv = volume_for(
            &claim(Some(STORAGE_CLASS), None),
            STORAGE_CLASS,
            dir,
            "Retain",
        )
        .unwrap();
        let spec = pv.spec.unwrap();
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some(STORAGE_CLASS));
        assert_eq!(spec.host_path.unwrap().path, "/pv/pvc-u1");
        assert_eq!(spec.capacity.unwrap()["storage"], Quantity("10Gi".into()));
        let claim_ref = spec.claim_ref.unwrap();
        assert_eq!(
            (claim_ref.namespace.as_deref(), claim_ref.uid.as_deref()),
            (Some("db"), Some("u1"))
        );
        assert!(volume_for(&claim(Some("other"), None), STORAGE_CLASS, dir, "Delete").is_none());
        let bound = claim(Some(STORAGE_CLASS), Some("pv-1"));
        assert!(volume_for(&bound, STORAGE_CLASS, dir, "Delete").is_none());
        let fast = volume_for(&claim(Some("fast-ssd"), None), "fast-ssd", dir, "Delete").unwrap();
        assert_eq!(
            fast.spec.unwrap().storage_class_name.as_deref(),
            Some("fast-ssd")
        );
        assert_eq!(class_named("fast-ssd", "Delete").provisioner, PROVISIONER);
    }
}
