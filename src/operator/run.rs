//! The operator process: configuration, logs, HTTP, leader election, the
//! two controllers, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::meta;
use crate::operator::Error;
use crate::operator::authz::{self, AuthzSettings};
use crate::operator::controllers::{SharedStores, run_controllers};
use crate::operator::runtime::certificate_store::CertificateStore;
use crate::operator::runtime::context::Settings;
use crate::operator::runtime::http::{HttpState, serve};
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::runtime::metrics::Metrics;
use crate::operator::runtime::shared_store::{SharedStore, watch};
use crate::operator::signing_request::CsrPolicy;
use crate::operator::store::crl::{self, CrlCache};

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
        certificates: CertificateStore::spawn(Api::all(client.clone())),
    };
    let mut metrics = Metrics::default();
    metrics.collect_from(shared.cas.store(), shared.certificates.clone());
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
    let authz = authz.map(|(listener, settings)| {
        spawn_authz(&client, &config, settings, listener, &metrics, &stop_rx)
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
    wind_down(result, http, authz).await
}

/// Ends the HTTP server and the webhook. Leadership lost (or never
/// obtainable): at once, so the process is restarted as a standby; serving
/// on would hold a replica that can never lead again. Otherwise after the
/// HTTP server's graceful stop (the webhook stopped taking requests with
/// the same signal; it may still be waiting for its first certificate).
async fn wind_down(
    result: Result<(), Error>,
    http: tokio::task::JoinHandle<Result<(), Error>>,
    authz: Option<tokio::task::JoinHandle<()>>,
) -> Result<(), Error> {
    if result.is_err() {
        http.abort();
    } else if let Ok(Err(e)) = http.await {
        error!(error = %e, "HTTP server failed");
    }
    if let Some(authz) = authz {
        authz.abort();
    }
    result
}

/// Serves the authorization webhook until the stop signal, logging why it
/// failed if it does.
fn spawn_authz(
    client: &Client,
    config: &RunConfig,
    settings: AuthzSettings,
    listener: std::net::TcpListener,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let served = authz::serve(
        client.clone(),
        config.namespace.clone(),
        settings,
        listener,
        metrics.clone(),
        stopped(stop.clone()),
    );
    tokio::spawn(async move {
        if let Err(e) = served.await {
            error!(error = %e, "authorization webhook failed");
        }
    })
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
        pod_certificate_api: Default::default(),
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
