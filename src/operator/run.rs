//! The operator process: configuration, logs, HTTP, leader election, the
//! two controllers, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::{
    CertificateAuthority, CertificatePolicy, CertificateRevocation, ClusterCertificate, meta,
};
use crate::operator::authz::{self, AuthzSettings};
use crate::operator::runtime::context::Settings;
use crate::operator::runtime::http::{HttpState, serve};
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::runtime::metrics::Metrics;
use crate::operator::runtime::shared_store::{Cached, SharedStore, changes, slim, watch};
use crate::operator::runtime::watch_backoff::EachWatchBacksOff;
use crate::operator::signing_request::{self, CsrPolicy};
use crate::operator::store::crl::{self, CrlCache};
use crate::operator::{
    Context, Error, Stores, certificate, certificate_authority, certificate_revocation,
    runtime::admission_guard,
};

/// How the operator writes its logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What the operator runs with, resolved by the command line
/// (`certop run`'s flags in src/cli/run.rs): plain values, no parsing.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The operator's namespace: CA Secrets and the leader Lease live here.
    pub namespace: String,
    /// Address of the HTTP server (/metrics, /healthz, /readyz).
    pub http_addr: SocketAddr,
    /// Some: only the replica holding this Lease reconciles; None: this
    /// replica reconciles at once.
    pub leader_election: Option<LeaderElection>,
    /// Objects reconciled at once per controller.
    pub concurrency: u16,
    /// Kubernetes API requests per second, sustained; 0 for no limit.
    pub kube_api_qps: f64,
    /// Kubernetes API requests allowed at once before the QPS applies.
    pub kube_api_burst: u32,
    pub log_format: LogFormat,
    /// Base URL of the CRLs this operator serves; None: the operator
    /// Service, `http://certop.<namespace>.svc`.
    pub crl_base_url: Option<String>,
    /// What certop does with CertificateSigningRequests.
    pub csr_policy: CsrPolicy,
    /// The namespaces certop writes into; empty: every namespace.
    pub managed_namespaces: Vec<String>,
    /// The authorization webhook that refuses revoked client certificates;
    /// None: revocation is published, not enforced.
    pub authz: Option<AuthzSettings>,
}

/// The leader Lease of the replicas.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    /// Seconds a leader's lease lasts without renewal: the failover time.
    pub lease_duration: u64,
    /// This replica's identity in the Lease; None: host and pid.
    pub identity: Option<String>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,kube_lease_manager=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Runs the operator until SIGTERM or SIGINT (or, electing a leader, until
/// the lease is lost), in steps: fail at start, not at exit (the port, the
/// API server, the namespace); follow what every replica follows; then
/// reconcile, as the leader or at once.
pub async fn run(config: RunConfig) -> Result<(), Error> {
    init_logging(config.log_format);
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| Error::CryptoProvider)?;
    let listener = crate::operator::runtime::http::bind(config.http_addr).await?;
    let authz = match &config.authz {
        Some(settings) => Some((authz::bind(settings.addr)?, settings.clone())),
        None => None,
    };
    let clients = connect(&config).await?;
    let client = clients.controllers.clone();
    // Every replica, leader or standby, follows the CAs and certificates:
    // their metrics are collected from these stores at scrape time, and the
    // controllers read them when this replica leads.
    let shared = SharedStores {
        cas: SharedStore::spawn(Api::all(client.clone())),
        certificates: SharedStore::spawn(Api::all(client.clone())),
    };
    let mut metrics = Metrics::default();
    metrics.collect_from(shared.cas.store(), shared.certificates.store());
    let metrics = Arc::new(metrics);
    let crls = Arc::new(CrlCache::default());
    let http_state = Arc::new(HttpState {
        metrics: metrics.clone(),
        crls: crls.clone(),
        ready: Default::default(),
    });
    let stop_rx = stop_on_signal();
    let http = tokio::spawn(serve(
        listener,
        http_state.clone(),
        stopped(stop_rx.clone()),
    ));
    check_cluster(&client, &config.namespace).await?;
    // Every replica serves the CRLs, leader or not: they follow the ConfigMaps.
    tokio::spawn(follow_crls(
        client.clone(),
        config.namespace.clone(),
        crls.clone(),
    ));
    // Every replica answers the authorization webhook, leader or not.
    let authz = authz.map(|(authz_listener, settings)| {
        let served = authz::serve(
            client.clone(),
            config.namespace.clone(),
            settings,
            authz_listener,
            metrics.clone(),
            stopped(stop_rx.clone()),
        );
        tokio::spawn(async move {
            if let Err(e) = served.await {
                error!(error = %e, "authorization webhook failed");
            }
        })
    });
    http_state.ready.store(true, Ordering::Relaxed);
    let settings = settings_of(&config, metrics, crls);
    info!(namespace = %config.namespace, http = %config.http_addr, leader_elect = config.leader_election.is_some(), managed_namespaces = %settings.managed_namespaces.describe(), "certop started");
    let result = match &config.leader_election {
        Some(election) => {
            run_as_elected(
                election,
                &config,
                clients,
                settings,
                shared,
                stop_rx.clone(),
            )
            .await
        }
        None => {
            run_controllers(
                client,
                settings,
                shared,
                config.concurrency,
                stopped(stop_rx.clone()),
            )
            .await;
            Ok(())
        }
    };
    if result.is_err() {
        // Leadership lost (or never obtainable): exit now, so the process is
        // restarted as a standby; serving on would hold a replica that can
        // never lead again.
        http.abort();
        if let Some(authz) = &authz {
            authz.abort();
        }
        return result;
    }

    if let Ok(Err(e)) = http.await {
        error!(error = %e, "HTTP server failed");
    }
    // The webhook stopped taking requests with the same signal; it may
    // still be waiting for its first certificate.
    if let Some(authz) = authz {
        authz.abort();
    }
    result
}

/// The Kubernetes clients, from the pod's service account or KUBECONFIG.
/// The leader lease keeps a client of its own, so a busy operator never
/// loses its lease to its own rate limit.
async fn connect(config: &RunConfig) -> Result<Clients, Error> {
    let kube_config = kube::Config::infer().await?;
    let lease = Client::try_from(kube_config.clone()).map_err(Error::KubeClient)?;
    let controllers = kube::client::ClientBuilder::try_from(kube_config)
        .map_err(Error::KubeClient)?
        .with_layer(&crate::operator::runtime::rate_limit::RateLimitLayer {
            qps: config.kube_api_qps,
            burst: config.kube_api_burst,
        })
        .build();
    Ok(Clients { controllers, lease })
}

/// A channel that turns true on SIGTERM or SIGINT.
fn stop_on_signal() -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// Resolves once `rx` turns true.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The API server answers and the operator's namespace exists (unless
/// certop may not read Namespaces: then the first write in it will say
/// what is wrong).
async fn check_cluster(client: &Client, namespace: &str) -> Result<(), Error> {
    client
        .apiserver_version()
        .await
        .map_err(Error::ApiServerUnreachable)?;
    match Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await
    {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::NamespaceMissing(namespace.to_string())),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
        Err(source) => Err(Error::NamespaceUnreadable {
            namespace: namespace.to_string(),
            source,
        }),
    }
}

/// The controllers' settings from the configuration.
fn settings_of(config: &RunConfig, metrics: Arc<Metrics>, crls: Arc<CrlCache>) -> Settings {
    Settings {
        namespace: config.namespace.clone(),
        crl_base_url: config
            .crl_base_url
            .clone()
            .unwrap_or_else(|| format!("http://certop.{}.svc", config.namespace)),
        metrics,
        crls,
        csr_policy: config.csr_policy.clone(),
        managed_namespaces: ManagedNamespaces::from_list(&config.managed_namespaces),
    }
}

/// The controllers' client (rate-limited) and the lease's (never held back).
struct Clients {
    controllers: Client,
    lease: Client,
}

/// Waits for the Lease, reconciles while holding it, and stops at once if
/// it is lost: the controllers' future is dropped, cancelling in-flight
/// work at its next await, and the process exits so it restarts as a
/// standby.
async fn run_as_elected(
    election: &LeaderElection,
    config: &RunConfig,
    clients: Clients,
    settings: Settings,
    shared: SharedStores,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    let identity = election.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let client = clients.controllers;
    let manager = LeaseManagerBuilder::new(clients.lease, &election.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&identity)
        .with_duration(election.lease_duration)
        .with_grace((election.lease_duration / 3).max(1))
        .build()
        .await?;
    let (mut leader, lease_task) = manager.watch().await;
    info!(%identity, lease = %election.lease_name, "waiting for the leader lease");
    loop {
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leader.changed() => if changed.is_err() {
                return Err(Error::LeaseManagerStopped);
            },
            _ = stop.wait_for(|s| *s) => {
                drop(leader);
                let _ = lease_task.await;
                return Ok(());
            }
        }
    }
    info!(%identity, "became the leader; starting controllers");
    let mut lost = leader.clone();
    let stop_for_controllers = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let outcome = tokio::select! {
        _ = run_controllers(client, settings, shared, config.concurrency, stop_for_controllers) => Ok(()),
        _ = lost.wait_for(|is_leader| !*is_leader) => {
            error!(%identity, "lost the leader lease; stopping");
            Err(Error::LostLeadership)
        }
    };
    drop(lost);
    drop(leader);
    if outcome.is_ok() {
        // Dropping the last receiver makes the lease manager release the
        // Lease, so a standby takes over at once after a graceful stop.
        let _ = lease_task.await;
    } else {
        // The Lease is someone else's: nothing to release, nothing to wait for.
        lease_task.abort();
    }
    outcome
}

/// Keeps this replica's CRL cache equal to the published CRL ConfigMaps,
/// reassembling a CRL stored in parts once all of them have arrived.
async fn follow_crls(client: Client, namespace: String, crls: Arc<CrlCache>) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let stream = watch(api, watcher::Config::default().labels(meta::CRL)).applied_objects();
    futures::pin_mut!(stream);
    let mut seen: std::collections::HashMap<String, ConfigMap> = Default::default();
    while let Some(item) = stream.next().await {
        match item {
            Ok(cm) => {
                let main = if crl::is_part(&cm) {
                    crl::main_of_part(&cm)
                } else {
                    Some(cm.name_any())
                };
                seen.insert(cm.name_any(), cm);
                let Some(main) = main.and_then(|m| seen.get(&m)) else {
                    continue;
                };
                if let Some((path, crl)) =
                    crl::from_config_maps(main, |n| seen.get(n).cloned(), None)
                {
                    crls.offer(&path, crl);
                }
            }
            Err(e) => warn!(error = %e, "watching CRL ConfigMaps"),
        }
    }
}

/// Runs the controllers until `shutdown` resolves (in-flight reconciles
/// finish first). No controller starts before every shared store has
/// listed, so none acts on a store still empty at start or failover.
async fn run_controllers(
    client: Client,
    settings: Settings,
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
        certificates: shared.certificates.store(),
        revocations: revocations.store(),
        policies: policies.store(),
        ca_secrets: ca_secret_store.store(),
    };
    let ready = futures::future::join5(
        stores.cas.wait_until_ready(),
        stores.certificates.wait_until_ready(),
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
    info!("stores ready; starting controllers");
    let ctx = Arc::new(Context::new(client.clone(), settings, stores));
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
    Controller::for_shared_stream(shared.cas.follow(), shared.cas.store())
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
    let issuer_store = shared.certificates.store();
    // Metadata only: memory grows with certop's Secrets, not the cluster's.
    // One watch per managed namespace (or one for the cluster): certop may
    // list Secrets nowhere else.
    let cert_secrets = futures::stream::select_all(
        managed_namespaces
            .apis::<PartialObjectMeta<Secret>>(&w.client)
            .into_iter()
            .map(|api| {
                watch(api, watcher::Config::default().labels(&managed))
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
    // A policy's change (or deletion) may allow or refuse the certificates
    // of the CAs it governs.
    let governed_store = shared.certificates.store();
    Controller::for_shared_stream(shared.certificates.follow(), shared.certificates.store())
        .with_config(w.config())
        .watches_shared_stream(signing_changes, move |ca| {
            certificate::certificates_of_issuer(&issuer_store, &ca.name_any())
        })
        .watches_shared_stream(policies.follow_with_deletes(), move |policy| {
            policy
                .spec
                .authorities
                .iter()
                .flat_map(|ca| certificate::certificates_of_issuer(&governed_store, ca))
                .collect::<Vec<_>>()
        })
        .watches_stream(cert_secrets, move |secret| {
            let owner = secret.annotations().get(meta::CERTIFICATE)?;
            Some(ObjectRef::<ClusterCertificate>::new(owner))
        })
        .graceful_shutdown_on(w.stopped())
        .run(
            certificate::reconcile,
            certificate::error_policy,
            w.ctx.clone(),
        )
        .for_each(log_error("ClusterCertificate controller"))
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
struct SharedStores {
    cas: SharedStore<CertificateAuthority>,
    certificates: SharedStore<ClusterCertificate>,
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
