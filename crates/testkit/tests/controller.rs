//! A small `kube_runtime::Controller` reconciles IdentityBindings against the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RESOURCE_ID, emulator_with_crd, eventually};
use futures::StreamExt;
use idbind_model::{IdentityBinding, IdentityBindingSpec, ManagedIdentityRef};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

struct Ctx {
    client: kube::Client,
}

async fn reconcile(ib: Arc<IdentityBinding>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let api: Api<IdentityBinding> = Api::all(ctx.client.clone());
    let generation = ib.metadata.generation.unwrap_or_default();
    let status = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "IdentityBinding", "metadata": {"name": ib.name_any()},
        "status": {"identityName": "payments", "observedGeneration": generation}});
    api.patch_status(
        &ib.name_any(),
        &PatchParams::apply("test-controller").force(),
        &Patch::Apply(&status),
    )
    .await?;
    // An owned ConfigMap, so deletion of the binding garbage-collects it.
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), "default");
    let owned = ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("ib-{}", ib.name_any())),
            owner_references: Some(vec![ib.controller_owner_ref(&()).unwrap()]),
            ..Default::default()
        },
        data: Some([("generation".to_string(), generation.to_string())].into()),
        ..Default::default()
    };
    cms.patch(
        &owned.name_any(),
        &PatchParams::apply("test-controller").force(),
        &Patch::Apply(&owned),
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(_: Arc<IdentityBinding>, _: &ReconcileError, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test]
async fn controller_reconciles_status_and_owned_objects() {
    let emulator = emulator_with_crd().await;
    let client = emulator.client().unwrap();
    let bindings: Api<IdentityBinding> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let controller = Controller::new(bindings.clone(), watcher::Config::default())
        .owns(cms.clone(), watcher::Config::default())
        .run(
            reconcile,
            error_policy,
            Arc::new(Ctx {
                client: client.clone(),
            }),
        )
        .for_each(|_| async {});
    let driver = tokio::spawn(controller);

    let ib = IdentityBinding::new(
        "payments",
        IdentityBindingSpec {
            managed_identity: ManagedIdentityRef {
                resource_id: RESOURCE_ID.into(),
            },
            allowed_subjects: vec![],
        },
    );
    bindings.create(&PostParams::default(), &ib).await.unwrap();
    eventually("status reconciled", || async {
        let ib = bindings.get("payments").await.ok()?;
        (ib.status?.identity_name.as_deref() == Some("payments")).then_some(())
    })
    .await;

    // A spec change bumps generation and is reconciled again.
    let spec = json!({"spec": {"allowedSubjects": [{"namespace": "payments"}]}});
    bindings
        .patch("payments", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    eventually("new generation observed", || async {
        let ib = bindings.get("payments").await.ok()?;
        (ib.status?.observed_generation == Some(2)).then_some(())
    })
    .await;
    eventually("owned object updated", || async {
        let cm = cms.get("ib-payments").await.ok()?;
        (cm.data?.get("generation")? == "2").then_some(())
    })
    .await;

    bindings.delete("payments", &Default::default()).await.unwrap();
    eventually("owned object collected", || async {
        cms.get_opt("ib-payments").await.ok()?.is_none().then_some(())
    })
    .await;
    driver.abort();
}
