//! `kubectl certop migrate-storage`: after the CRDs of a release that
//! stores `certop.dev/v1` are applied, objects written before stay in etcd
//! as `v1alpha1` until something writes them again, and each CRD's
//! `status.storedVersions` keeps listing `v1alpha1`, so that version can
//! never be removed from a later CRD. This rewrites every object of every
//! kind unchanged (the API server then stores it as `v1`), then sets
//! `storedVersions` to `[v1]`: what kube-storage-version-migrator does,
//! for certop's four kinds, with no component to install.
//!
//! Safe while the operator runs: a write that meets a newer
//! resourceVersion (409) is retried on the object read again, an object
//! deleted meanwhile is skipped, and an object written by anyone after the
//! new CRDs were applied is stored as `v1` already. Running it again
//! changes nothing: a CRD whose `storedVersions` is `[v1]` is left alone.

use clap::Args;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::TypeMeta;
use kube::{Api, ResourceExt};

use super::CliError;
use super::cluster::Cluster;
use crate::api::{GROUP, VERSION};

#[derive(Debug, Args)]
pub struct MigrateStorageArgs {}

/// The field manager of the rewrites and of the `storedVersions` update.
const FIELD_MANAGER: &str = "certop-migrate-storage";

/// Objects listed per page.
const PAGE: u32 = 500;

/// Tries of one object's rewrite before giving up: each retry follows a
/// conflict, i.e. someone else wrote the object meanwhile.
const ATTEMPTS: usize = 10;

/// What to do about one CRD, from what the API server says of it.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// `storedVersions` is `[v1]`: nothing is stored as another version.
    AlreadyMigrated,
    /// Objects may be stored as these versions: rewrite them all as `v1`.
    Rewrite { stored_versions: Vec<String> },
}

/// Why a CRD cannot be migrated yet.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error(
        "CRD {crd} does not store {GROUP}/{VERSION} (its storage version is {storage}): apply the CRDs of this release first (kubectl apply --server-side -f crds/certop-crds.yaml)"
    )]
    StorageVersion { crd: String, storage: String },
}

/// The decision for one CRD: migrate only once `v1` is its storage
/// version (else the rewrites would store the old version again), and not
/// again once `storedVersions` says only `v1`.
pub fn plan(crd: &CustomResourceDefinition) -> Result<Plan, NotReady> {
    let storage = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .map_or("none", |v| v.name.as_str());
    if storage != VERSION {
        return Err(NotReady::StorageVersion {
            crd: crd.name_any(),
            storage: storage.to_string(),
        });
    }
    let stored_versions = crd
        .status
        .as_ref()
        .and_then(|s| s.stored_versions.clone())
        .unwrap_or_default();
    if stored_versions == [VERSION] {
        Ok(Plan::AlreadyMigrated)
    } else {
        Ok(Plan::Rewrite { stored_versions })
    }
}

/// What a migration of one kind did, for its line of output.
#[derive(Debug, PartialEq, Eq)]
pub struct Migrated {
    pub kind: String,
    /// `None`: `storedVersions` was `[v1]` already, nothing was written.
    pub rewritten: Option<usize>,
    pub stored_versions_before: Vec<String>,
}

impl std::fmt::Display for Migrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rewritten {
            None => write!(f, "{}: stored as {GROUP}/{VERSION} only", self.kind),
            Some(n) => write!(
                f,
                "{}: {n} object(s) rewritten as {GROUP}/{VERSION}; storedVersions [{}] -> [{VERSION}]",
                self.kind,
                self.stored_versions_before.join(", ")
            ),
        }
    }
}

pub async fn migrate_storage(_: MigrateStorageArgs) -> Result<(), CliError> {
    let cluster = Cluster::connect().await?;
    for migrated in migrate_all(&cluster).await? {
        println!("{migrated}");
    }
    Ok(())
}

/// Migrates every kind certop defines, in the order of `crds/`; every CRD
/// is checked first, so CRDs not all upgraded yet mean no write at all.
pub async fn migrate_all(cluster: &Cluster) -> Result<Vec<Migrated>, CliError> {
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let mut plans = Vec::new();
    for ours in crate::api::crds() {
        let name = ours.name_any();
        let installed = crds
            .get(&name)
            .await
            .map_err(cluster.error(format!("CustomResourceDefinition {name}")))?;
        let plan = plan(&installed).map_err(|e| CliError::Invalid(e.to_string()))?;
        plans.push((ours, plan));
    }
    let mut done = Vec::new();
    for (ours, plan) in plans {
        done.push(match plan {
            Plan::AlreadyMigrated => Migrated {
                kind: ours.spec.names.kind.clone(),
                rewritten: None,
                stored_versions_before: vec![VERSION.to_string()],
            },
            Plan::Rewrite { stored_versions } => {
                migrate_kind(cluster, &crds, &ours, stored_versions).await?
            }
        });
    }
    Ok(done)
}

/// Rewrites every object of one kind, then sets its CRD's `storedVersions`.
async fn migrate_kind(
    cluster: &Cluster,
    crds: &Api<CustomResourceDefinition>,
    ours: &CustomResourceDefinition,
    stored_versions_before: Vec<String>,
) -> Result<Migrated, CliError> {
    let client = &cluster.client;
    let name = ours.name_any();
    let kind = ours.spec.names.kind.clone();
    let resource = ApiResource {
        group: GROUP.to_string(),
        version: VERSION.to_string(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.clone(),
        plural: ours.spec.names.plural.clone(),
    };
    let objects: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let mut rewritten = 0;
    let mut page = ListParams::default().limit(PAGE);
    loop {
        let list = objects
            .list(&page)
            .await
            .map_err(cluster.error(format!("listing {kind}")))?;
        for object in list.items {
            if rewrite(cluster, &objects, &resource, object).await? {
                rewritten += 1;
            }
        }
        match crate::list_pages::next(&page, &list.metadata) {
            Some(next) => page = next,
            None => break,
        }
    }
    let stored = serde_json::json!({"status": {"storedVersions": [VERSION]}});
    crds.patch_status(
        &name,
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        },
        &Patch::Merge(&stored),
    )
    .await
    .map_err(cluster.error(format!(
        "CustomResourceDefinition {name} status.storedVersions"
    )))?;
    Ok(Migrated {
        kind,
        rewritten: Some(rewritten),
        stored_versions_before,
    })
}

/// Writes `object` back as it is, so the API server stores it as `v1`;
/// a conflict reads it again and retries. `false`: deleted meanwhile.
async fn rewrite(
    cluster: &Cluster,
    objects: &Api<DynamicObject>,
    resource: &ApiResource,
    mut object: DynamicObject,
) -> Result<bool, CliError> {
    let name = object.name_any();
    let what = || format!("{} {name}", resource.kind);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    for _ in 0..ATTEMPTS {
        object.types = Some(TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        });
        match objects.replace(&name, &params, &object).await {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                match objects
                    .get_opt(&name)
                    .await
                    .map_err(cluster.error(what()))?
                {
                    Some(fresh) => object = fresh,
                    None => return Ok(false),
                }
            }
            Err(e) => return Err(cluster.error(what())(e)),
        }
    }
    Err(CliError::Invalid(format!(
        "{}: written by someone else at each of {ATTEMPTS} tries; run migrate-storage again",
        what()
    )))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionStatus;
    use serde_json::{Value, json};

    use super::*;
    use crate::operator::testing::fake_api::{FakeApi, Fault};

    fn crd(storage: &str, stored_versions: Option<&[&str]>) -> CustomResourceDefinition {
        let mut crd = crate::api::crds().remove(1);
        for v in &mut crd.spec.versions {
            v.storage = v.name == storage;
        }
        crd.status = stored_versions.map(|s| CustomResourceDefinitionStatus {
            stored_versions: Some(s.iter().map(|v| v.to_string()).collect()),
            ..Default::default()
        });
        crd
    }

    #[test]
    fn a_crd_is_rewritten_until_it_stores_v1_only_and_not_before_v1_is_its_storage_version() {
        let rewrite = |s: &[&str]| {
            Ok(Plan::Rewrite {
                stored_versions: s.iter().map(|v| v.to_string()).collect(),
            })
        };
        let cases = [
            (
                "CRDs of 0.1.0 (v1alpha1 stored)",
                crd("v1alpha1", Some(&["v1alpha1"])),
                Err(NotReady::StorageVersion {
                    crd: "clustercertificates.certop.dev".into(),
                    storage: "v1alpha1".into(),
                }),
            ),
            (
                "v1 applied over v1alpha1",
                crd("v1", Some(&["v1alpha1", "v1"])),
                rewrite(&["v1alpha1", "v1"]),
            ),
            (
                "v1 only",
                crd("v1", Some(&["v1"])),
                Ok(Plan::AlreadyMigrated),
            ),
            ("no status yet", crd("v1", None), rewrite(&[])),
        ];
        for (name, crd, want) in cases {
            assert_eq!(plan(&crd), want, "{name}");
        }
    }

    #[test]
    fn not_ready_says_what_to_apply() {
        let e = plan(&crd("v1alpha1", Some(&["v1alpha1"]))).expect_err("not ready");
        assert_eq!(
            e.to_string(),
            "CRD clustercertificates.certop.dev does not store certop.dev/v1 (its storage version is v1alpha1): apply the CRDs of this release first (kubectl apply --server-side -f crds/certop-crds.yaml)"
        );
    }

    const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

    fn stored_versions(api: &FakeApi, name: &str) -> Value {
        let crd: Value = api.get(&format!("{CRDS}/{name}")).expect("crd");
        crd["status"]["storedVersions"].clone()
    }

    /// The API server's view after the v1 CRDs were applied over 0.1.0's:
    /// two objects of each kind, stored as v1alpha1.
    fn upgraded_cluster() -> FakeApi {
        let api = FakeApi::new(&[]);
        for crd in crate::api::crds() {
            let name = crd.name_any();
            let mut value = serde_json::to_value(&crd).expect("crd");
            value["status"] = json!({"storedVersions": ["v1alpha1", "v1"]});
            api.put(&format!("{CRDS}/{name}"), value);
            for object in ["a", "b"] {
                api.put(
                    &format!("/apis/certop.dev/v1/{}/{object}", crd.spec.names.plural),
                    json!({"apiVersion": "certop.dev/v1alpha1", "kind": crd.spec.names.kind,
                           "metadata": {"name": object}, "spec": {"x": object}}),
                );
            }
        }
        api
    }

    #[tokio::test]
    async fn every_object_is_rewritten_a_conflict_is_retried_and_a_second_run_writes_nothing() {
        let api = upgraded_cluster();
        // The first rewrite meets a write of the operator's (409).
        api.fail_write(1, Fault::Status(409));
        let cluster = Cluster::with_client(api.client(), "https://fake");
        let migrated = migrate_all(&cluster).await.expect("migrated");
        let lines: Vec<String> = migrated.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "CertificateAuthority: 2 object(s) rewritten as certop.dev/v1; storedVersions [v1alpha1, v1] -> [v1]",
                "ClusterCertificate: 2 object(s) rewritten as certop.dev/v1; storedVersions [v1alpha1, v1] -> [v1]",
                "CertificateRevocation: 2 object(s) rewritten as certop.dev/v1; storedVersions [v1alpha1, v1] -> [v1]",
                "CertificatePolicy: 2 object(s) rewritten as certop.dev/v1; storedVersions [v1alpha1, v1] -> [v1]",
            ]
        );
        let log = api.log();
        assert_eq!(
            log.iter()
                .filter(|w| *w == "PUT /apis/certop.dev/v1/certificateauthorities/a")
                .count(),
            2,
            "the conflict retried: {log:?}"
        );
        for crd in crate::api::crds() {
            assert_eq!(stored_versions(&api, &crd.name_any()), json!(["v1"]));
            for object in ["a", "b"] {
                let path = format!("/apis/certop.dev/v1/{}/{object}", crd.spec.names.plural);
                let stored: Value = api.get(&path).expect("object");
                assert_eq!(stored["apiVersion"], "certop.dev/v1", "{path}");
                assert_eq!(stored["spec"], json!({"x": object}), "{path}: unchanged");
            }
        }
        // 8 objects, one of them twice, and 4 storedVersions.
        assert_eq!(api.writes(), 13, "{log:?}");

        let again = migrate_all(&cluster).await.expect("migrated again");
        assert!(again.iter().all(|m| m.rewritten.is_none()), "{again:?}");
        assert_eq!(api.writes(), 13, "a second run writes nothing");
    }

    #[tokio::test]
    async fn an_object_deleted_during_the_migration_is_skipped() {
        let api = upgraded_cluster();
        // The first rewrite finds the object gone.
        api.fail_write(1, Fault::Status(404));
        let cluster = Cluster::with_client(api.client(), "https://fake");
        let migrated = migrate_all(&cluster).await.expect("migrated");
        assert_eq!(migrated[0].rewritten, Some(1));
        assert!(migrated[1..].iter().all(|m| m.rewritten == Some(2)));
    }

    #[tokio::test]
    async fn crds_not_yet_upgraded_are_refused_before_any_write() {
        // Three CRDs upgraded, the last one still v0.1.0's.
        let api = upgraded_cluster();
        let mut crd = crate::api::crds().remove(3);
        crd.spec.versions.retain(|v| v.name == "v1alpha1");
        crd.spec.versions[0].storage = true;
        let mut value = serde_json::to_value(&crd).expect("crd");
        value["status"] = json!({"storedVersions": ["v1alpha1"]});
        api.put(&format!("{CRDS}/{}", crd.name_any()), value);
        let cluster = Cluster::with_client(api.client(), "https://fake");
        let e = migrate_all(&cluster).await.expect_err("refused");
        assert!(
            e.to_string()
                .contains("apply the CRDs of this release first"),
            "{e}"
        );
        assert_eq!(api.writes(), 0);
    }
}
