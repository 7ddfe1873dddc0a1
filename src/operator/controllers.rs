//! The five controllers wired, one function each with the watches that
//! trigger it, over one `Wiring` of the shared stores; and the stores every
//! replica follows, leader or not.

use crate::api::{CertificateAuthority, CertificatePolicy, CertificateRevocation, meta};
use crate::operator::pod_certificate;
use crate::operator::runtime::certificate_store::CertificateStore;
use crate::operator::runtime::context::Settings;
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::runtime::pod_certificate_api::PodCertificateApi;
use crate::operator::runtime::shared_store::{Cached, SharedStore, changes, slim, watch};
use crate::operator::runtime::watch_backoff::EachWatchBacksOff;
use crate::operator::signing_request::{self};
use crate::operator::{
    Context, Stores, certificate, certificate_authority, certificate_revocation,
    runtime::admission_guard,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::certificates::v1beta1::PodCertificateRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{Instrument, info, warn};

/// Runs the controllers until `shutdown` resolves (in-flight reconciles
/// finish first). No controller starts before every shared store has
/// listed, so none acts on a store still empty at start or failover.
pub(super) async fn run_controllers(
    client: Client,
    mut settings: Settings,
    shared: SharedStores,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let namespace = settings.namespace.clone();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let managed_namespaces = settings.managed_namespaces.clone();

    // The stores a controller reads, its own kind's included, are shared
    // (one copy of each object) and filled by watches driven apart from the
    // controllers, and every controller starts only once all of them have
    // listed: a controller acting on a store still empty at start or
    // failover would make a CSR fail for good or skip a revoke-on-delete.
    let revocations = SharedStore::spawn(Api::<CertificateRevocation>::all(client.clone()));
    let policies = SharedStore::spawn(Api::<CertificatePolicy>::all(client.clone()));
    // Every Secret of the operator's namespace, metadata only: a CA's key
    // Secret may be one a person created (adoption), without certop's labels.
    let ca_secret_api = Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), &namespace);
    let ca_secret_store = SharedStore::spawn(ca_secret_api.clone());
    let ca_secrets = watch(ca_secret_api, watcher::Config::default()).touched_objects();
    let stores = Stores {
        cas: shared.cas.store(),
        certificates: shared.certificates.clone(),
        revocations: revocations.store(),
        policies: policies.store(),
        ca_secrets: ca_secret_store.store(),
    };
    let ready = futures::future::join5(
        stores.cas.wait_until_ready(),
        stores.certificates.wait_until_listed(),
        stores.revocations.wait_until_ready(),
        stores.policies.wait_until_ready(),
        stores.ca_secrets.wait_until_ready(),
    );
    let abort = || {
        revocations.abort();
        policies.abort();
        ca_secret_store.abort();
    };
    tokio::select! {
        _ = ready => {}
        _ = stopped(shutdown_rx.clone()) => {
            abort();
            return;
        }
    }
    settings.pod_certificate_api = PodCertificateApi::discover(&client).await;
    let ctx = Arc::new(Context::new(client.clone(), settings, stores));
    // No certificate is decided before the guard is looked at once.
    tokio::select! {
        _ = admission_guard::observe(&client, &ctx.guard) => {}
        _ = stopped(shutdown_rx.clone()) => {
            abort();
            return;
        }
    }
    info!("stores ready; starting controllers");
    let guard = tokio::spawn(admission_guard::follow(client.clone(), ctx.guard.clone()));
    let wiring = Wiring {
        client,
        ctx,
        concurrency,
        shutdown: shutdown_rx,
    };
    futures::join!(
        ca_controller(&wiring, &shared, ca_secrets),
        certificate_controller(&wiring, &shared, &policies, &managed_namespaces),
        revocation_controller(&wiring, &revocations),
        csr_controller(&wiring),
        pod_certificate_controller(&wiring),
    );
    guard.abort();
    abort();
}

/// What every controller is started with.
struct Wiring {
    client: Client,
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: watch::Receiver<bool>,
}

impl Wiring {
    fn config(&self) -> controller::Config {
        controller::Config::default().concurrency(self.concurrency)
    }

    /// Resolves when the controllers are to stop.
    fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.shutdown.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// The CA controller: its CAs, and what a CA pass reads beside them
/// (namespaces for trust bundles, its key Secrets, its ledger shards and
/// CRL ConfigMaps). Debounced: a burst of issuances (ledger writes) is one
/// CA pass.
fn ca_controller(
    w: &Wiring,
    shared: &SharedStores,
    ca_secrets: impl futures::Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>>
    + Send
    + 'static,
) -> impl Future<Output = ()> {
    let namespace = w.ctx.namespace.clone();
    let bundles_store = shared.cas.store();
    let secrets_store = shared.cas.store();
    let labelled = |label: &str| {
        watch(
            Api::<PartialObjectMeta<ConfigMap>>::namespaced(w.client.clone(), &namespace),
            watcher::Config::default().labels(label),
        )
        .touched_objects()
    };
    let of_its_ca = |cm: PartialObjectMeta<ConfigMap>| {
        cm.annotations()
            .get(meta::CERTIFICATE_AUTHORITY)
            .map(|ca| ObjectRef::<CertificateAuthority>::new(ca))
    };
    // A CA's own status write comes back through its watch; one that only
    // moved the counts (each pass writes them during a burst of issuances)
    // starts no pass: that echo kept a pass, and its read of the whole
    // ledger, running every second or two while the ledger grew.
    let own_changes = changes(shared.cas.follow(), shared.cas.store(), ca_pass_identity);
    Controller::for_shared_stream(own_changes, shared.cas.store())
        .with_config(w.config().debounce(std::time::Duration::from_millis(500)))
        .watches_stream(
            watch(
                Api::<Namespace>::all(w.client.clone()),
                watcher::Config::default(),
            )
            .touched_objects(),
            move |_ns| {
                bundles_store
                    .state()
                    .iter()
                    .filter(|ca| ca.spec.trust_bundle.is_some())
                    .map(|ca| ObjectRef::from_obj(ca.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches_stream(ca_secrets, move |secret| {
            let name = secret.name_any();
            // Keys a rotation made name their CA; an adopted Secret is
            // found by the name the CA's spec gives.
            let owner = secret
                .annotations()
                .get(meta::CERTIFICATE_AUTHORITY)
                .cloned();
            secrets_store
                .state()
                .iter()
                .filter(|ca| {
                    owner.as_deref() == Some(ca.name_any().as_str())
                        || certificate_authority::secret_name(ca).as_deref() == Some(name.as_str())
                })
                .map(|ca| ObjectRef::from_obj(ca.as_ref()))
                .collect::<Vec<_>>()
        })
        // A new or changed CRL ConfigMap updates (or repairs) the CA's status;
        // a ledger shard's change updates its counts (the controller is debounced).
        .watches_stream(labelled(meta::LEDGER), of_its_ca)
        .watches_stream(labelled(meta::CRL), of_its_ca)
        .graceful_shutdown_on(w.stopped())
        .run(
            certificate_authority::reconcile,
            certificate_authority::error_policy,
            w.ctx.clone(),
        )
        .for_each(log_error("CertificateAuthority controller"))
}

/// The certificate controller. A certificate's own status and Secret
/// writes come back through the watches and start a pass that re-derives
/// what they wrote: that pass repairs what an earlier one wrote from a
/// view not yet complete (a CA key whose Secret the store had not yet shown).
fn certificate_controller(
    w: &Wiring,
    shared: &SharedStores,
    policies: &SharedStore<CertificatePolicy>,
    managed_namespaces: &ManagedNamespaces,
) -> impl Future<Output = ()> {
    let managed = format!("{}={}", meta::MANAGED_BY, meta::MANAGED_BY_VALUE);
    let issuer_store = shared.certificates.clone();
    // Metadata only: memory grows with certop's Secrets, not the cluster's.
    // One watch per managed namespace (or one for the cluster): certop may
    // list Secrets nowhere else.
    // Each event also tells which copy of a Secret certop just wrote is
    // still its newest version (`written_secrets`), before the pass it
    // starts runs.
    let cert_secrets = futures::stream::select_all(
        managed_namespaces
            .apis::<PartialObjectMeta<Secret>>(&w.client)
            .into_iter()
            .map(|api| {
                let ctx = w.ctx.clone();
                watch(api, watcher::Config::default().labels(&managed))
                    .inspect_ok(move |event| ctx.written_secrets.observe(event))
                    .touched_objects()
                    .boxed()
            }),
    );
    // Only a change that matters to signing reaches the certificates: not
    // every CRL number the CA's status shows.
    let signing_changes = changes(
        shared.cas.follow_with_deletes(),
        shared.cas.store(),
        signing_identity,
    );
    let on_signing = signing_changes
        .flat_map(move |ca| futures::stream::iter(issuer_store.names_of_issuer(&ca.name_any())));
    // A policy's change (or deletion) may allow or refuse the certificates
    // of the CAs it governs.
    let governed_store = shared.certificates.clone();
    let on_policy = policies.follow_with_deletes().flat_map(move |policy| {
        futures::stream::iter(
            policy
                .spec
                .authorities
                .iter()
                .flat_map(|ca| governed_store.names_of_issuer(ca))
                .collect::<Vec<_>>(),
        )
    });
    let on_secret = cert_secrets.filter_map(|secret| {
        std::future::ready(match secret {
            Ok(secret) => secret
                .annotations()
                .get(meta::CERTIFICATE)
                .map(|owner| Arc::<str>::from(owner.as_str())),
            Err(e) => {
                warn!(error = %e, "ClusterCertificate controller: Secret watch");
                None
            }
        })
    });
    // Every trigger is a name pushed into the certificate queue
    // (`name_queue`), which holds each waiting certificate by its name,
    // never twice, and gives out at most `--concurrency` at once. A
    // restart, a re-list or a CA's change queues every certificate.
    let triggers = futures::stream::select_all([
        shared.certificates.follow_names().boxed(),
        on_signing.boxed(),
        on_policy.boxed(),
        on_secret.boxed(),
    ]);
    let queue = w.ctx.certificate_queue.clone();
    let concurrency = usize::from(w.concurrency);
    let feed = AbortOnDrop(tokio::spawn(triggers.for_each(move |name| {
        queue.push(name);
        std::future::ready(())
    })));
    let present = shared.certificates.clone();
    let store = shared.certificates.clone();
    let ctx = w.ctx.clone();
    let passes = w.ctx.certificate_queue.clone().run(
        move |name| present.contains(name),
        concurrency,
        w.stopped(),
        move |name| {
            let (store, ctx) = (store.clone(), ctx.clone());
            let span = tracing::info_span!("reconciling object", certificate = %name);
            async move {
                match store.get(&name) {
                    Some(cert) => {
                        if let Err(e) = certificate::reconcile(cert.clone(), ctx.clone()).await {
                            warn!(error = %e, "ClusterCertificate controller");
                            certificate::error_policy(cert, &e, ctx);
                        }
                    }
                    // Held but unreadable (logged by the store): looked at
                    // again, not forgotten. Gone since it was given out:
                    // nothing to look at.
                    None if store.contains(&name) => ctx
                        .certificate_queue
                        .wake_after(&name, certificate::UNREADABLE_RETRY),
                    None => {}
                }
            }
            .instrument(span)
        },
    );
    async move {
        passes.await;
        drop(feed);
    }
}

/// A task that ends with the future that holds it: the certificate
/// controller's trigger feed, when leadership is lost mid-run.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn revocation_controller(
    w: &Wiring,
    revocations: &SharedStore<CertificateRevocation>,
) -> impl Future<Output = ()> {
    Controller::for_shared_stream(revocations.follow(), revocations.store())
        .with_config(w.config())
        .graceful_shutdown_on(w.stopped())
        .run(
            certificate_revocation::reconcile,
            certificate_revocation::error_policy,
            w.ctx.clone(),
        )
        .for_each(log_error("CertificateRevocation controller"))
}

fn csr_controller(w: &Wiring) -> impl Future<Output = ()> {
    slim_controller(Api::<CertificateSigningRequest>::all(w.client.clone()))
        .with_config(w.config())
        .graceful_shutdown_on(w.stopped())
        .run(
            signing_request::reconcile,
            signing_request::error_policy,
            w.ctx.clone(),
        )
        .for_each(log_error("CertificateSigningRequest controller"))
}

/// The PodCertificateRequest controller, when the API server serves
/// them (discovery said so at start; the CAs' status says when not).
async fn pod_certificate_controller(w: &Wiring) {
    if !w.ctx.pod_certificate_api.requests {
        return;
    }
    let config =
        controller::Config::default().concurrency(w.concurrency.max(pod_certificate::CONCURRENCY));
    slim_controller(Api::<PodCertificateRequest>::all(w.client.clone()))
        .with_config(config)
        .graceful_shutdown_on(w.stopped())
        .run(
            pod_certificate::reconcile,
            pod_certificate::error_policy,
            w.ctx.clone(),
        )
        .for_each(log_error("PodCertificateRequest controller"))
        .await
}

/// What a controller's run stream yields for each reconcile: its error,
/// if any, is logged (the error policy has already scheduled the retry).
fn log_error<T, E: std::fmt::Display>(
    controller: &'static str,
) -> impl Fn(Result<T, E>) -> std::future::Ready<()> {
    move |result| {
        if let Err(e) = result {
            warn!(error = %e, "{controller}");
        }
        std::future::ready(())
    }
}

/// The CA and certificate stores every replica keeps.
pub(super) struct SharedStores {
    pub(super) cas: SharedStore<CertificateAuthority>,
    pub(super) certificates: CertificateStore,
}

/// A controller with a store of its own, of slimmed objects (see `slim`),
/// for a kind no other reader needs.
fn slim_controller<K: Cached>(api: Api<K>) -> Controller<K> {
    let (reader, writer) = reflector::store::<K>();
    let stream = watch(api, watcher::Config::default())
        .modify(slim::<K>)
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(stream, reader).trigger_backoff(EachWatchBacksOff)
}

/// What of a CA a pass of its own acts on: all of it but the counts its
/// status shows (issued, revoked, without digest), which only a pass
/// writes and which the ledger's watch follows already.
fn ca_pass_identity(ca: &CertificateAuthority) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut seen = ca.clone();
    seen.metadata.resource_version = None;
    seen.metadata.managed_fields = None;
    if let Some(s) = seen.status.as_mut() {
        s.issued_certificates = None;
        s.revoked_certificates = None;
        s.certificates_without_digest = None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // An object that does not serialize is always a change.
    match serde_json::to_vec(&seen) {
        Ok(bytes) => bytes.hash(&mut h),
        Err(_) => ca.metadata.resource_version.hash(&mut h),
    }
    h.finish()
}

/// What of a CA matters to the certificates it signs: its generation
/// (spec), its Ready condition, its certificate and its binding; not the
/// CRL fields its status updates often.
fn signing_identity(ca: &CertificateAuthority) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ca.metadata.generation.hash(&mut h);
    ca.metadata.deletion_timestamp.is_some().hash(&mut h);
    // A rotation changes which keys are trusted and which one signs.
    for key in [
        meta::CA_FINGERPRINT,
        meta::CA_SIGNING_KEY,
        meta::CA_NEXT_FINGERPRINT,
        meta::CA_PREVIOUS_FINGERPRINT,
    ] {
        ca.annotations().get(key).hash(&mut h);
    }
    if let Some(s) = &ca.status {
        s.fingerprint.hash(&mut h);
        // certop's record of the rotation, which the mirror above follows.
        if let Some(r) = s.rotation.as_ref().and_then(|r| r.record.as_ref()) {
            (
                r.signing_key,
                &r.signing_fingerprint,
                &r.next_fingerprint,
                &r.previous_fingerprint,
                &r.switched_at,
                r.previous_certificate.is_some(),
            )
                .hash(&mut h);
        }
        if let Some(c) =
            crate::operator::conditions::find(&s.conditions, crate::operator::conditions::READY)
        {
            (&c.status, &c.reason, &c.message).hash(&mut h);
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CertificateAuthorityStatus;

    fn ca() -> CertificateAuthority {
        let mut ca: CertificateAuthority = serde_json::from_value(serde_json::json!({
            "apiVersion": "certop.dev/v1",
            "kind": "CertificateAuthority",
            "metadata": {"name": "ca", "resourceVersion": "1", "generation": 1},
            "spec": {"subject": {"commonName": "ca"}},
        }))
        .expect("a valid CertificateAuthority");
        ca.status = Some(CertificateAuthorityStatus {
            issued_certificates: Some(1),
            crl_number: Some(1),
            ..Default::default()
        });
        ca
    }

    #[test]
    fn a_ca_pass_follows_all_but_the_counts_its_own_status_shows() {
        let base = ca_pass_identity(&ca());
        let mut counts = ca();
        counts.metadata.resource_version = Some("2".into());
        if let Some(s) = counts.status.as_mut() {
            s.issued_certificates = Some(2);
            s.revoked_certificates = Some(1);
            s.certificates_without_digest = Some(3);
        }
        assert_eq!(ca_pass_identity(&counts), base, "only the counts moved");
        let mut crl = ca();
        if let Some(s) = crl.status.as_mut() {
            s.crl_number = Some(2);
        }
        let mut spec = ca();
        spec.metadata.generation = Some(2);
        let mut annotated = ca();
        annotated
            .annotations_mut()
            .insert(meta::CA_FINGERPRINT.into(), "ab".into());
        let mut deleting = ca();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let mut cleared = ca();
        cleared.status = None;
        for (what, changed) in [
            ("a new CRL", crl),
            ("the spec", spec),
            ("an annotation", annotated),
            ("a deletion", deleting),
            ("the status cleared", cleared),
        ] {
            assert_ne!(ca_pass_identity(&changed), base, "{what}");
        }
    }
}
