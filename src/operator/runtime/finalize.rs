use std::fmt::Debug;
use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Error as FinalizerError, Event, finalizer};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::meta;
use crate::operator::{Context, Error};

/// Runs `apply` for a live object and `cleanup` for one being deleted,
/// behind certop's finalizer, `instrumented`.
pub async fn reconcile_with_finalizer<K, A, C, FA, FC>(
    controller: &str,
    obj: Arc<K>,
    ctx: &Context,
    apply: A,
    cleanup: C,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    A: FnOnce(Arc<K>) -> FA,
    C: FnOnce(Arc<K>) -> FC,
    FA: Future<Output = Result<Action, Error>>,
    FC: Future<Output = Result<Action, Error>>,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::all(ctx.client.clone());
    instrumented(controller, &name, ctx, async {
        finalizer(&api, meta::FINALIZER, obj, |event| async {
            match event {
                Event::Apply(o) => apply(o).await,
                Event::Cleanup(o) => cleanup(o).await,
            }
        })
        .await
        .map_err(|e| match e {
            FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
            other => Error::Finalizer(Box::new(other)),
        })
    })
    .await
}

/// Runs one reconcile of `controller` for the object `name`: records its
/// duration and ends the object's error backoff when it succeeds (the
/// backoff itself is `backoff::retry`, the controllers' error policy).
pub async fn instrumented(
    controller: &str,
    name: &str,
    ctx: &Context,
    pass: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = pass.await;
    ctx.metrics
        .reconciled(controller, started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.reset(&format!("{controller}/{name}"));
    }
    result
}

#[cfg(test)]
mod tests {
    /// The chart sets certop's finalizer at create (a MutatingAdmissionPolicy);
    /// a policy that set another name would cost the patch it saves and
    /// leave a finalizer nothing removes.
    #[test]
    fn the_admission_policy_sets_certops_own_finalizer() {
        let policy =
            include_str!("../../../charts/certop/templates/certificate-finalizer-admission.yaml");
        assert!(
            policy.contains(&format!(
                "finalizers: [\"{}\"]",
                crate::api::meta::FINALIZER
            )),
            "{policy}"
        );
    }
}
