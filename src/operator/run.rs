//! The operator process: configuration, logs, HTTP, leader election, the
//! two controllers, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use ipnet::IpNet;
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

use super::context::Settings;
use super::crl::{self, CrlCache};
use super::http::{HttpState, serve};
use super::managed_namespaces::ManagedNamespaces;
use super::metrics::Metrics;
use super::shared_store::{Cached, SharedStore, changes, slim, watch};
use super::signing_request::{self, CsrPolicy};
use super::watch_backoff::EachWatchBacksOff;
use super::{
    Context, Error, Stores, admission_guard, certificate, certificate_authority,
    certificate_revocation,
};
use crate::api::{
    CertificateAuthority, CertificatePolicy, CertificateRevocation, ClusterCertificate, meta,
};
use crate::csr::kubelet_serving::{DnsPattern, ServingNameRules};
use crate::pki::DEFAULT_SERVICE_CIDR;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A QPS flag that is not a rate certop can use.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a number of requests per second from 0 (no limit) to 100000")]
pub struct QpsError(String);

/// A QPS flag: a number from 0 (no limit) to 100,000.
fn parse_qps(s: &str) -> Result<f64, QpsError> {
    match s.parse::<f64>() {
        Ok(q) if (0.0..=100_000.0).contains(&q) => Ok(q),
        _ => Err(QpsError(s.to_string())),
    }
}

/// `certop run`: flags, each also settable from the environment.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// The operator's namespace: CA Secrets and the leader Lease live here.
    #[arg(long, env = "CERTOP_NAMESPACE", default_value = "certop-system")]
    pub namespace: String,
    /// Address of the HTTP server (/metrics, /healthz, /readyz).
    #[arg(long, env = "CERTOP_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Elect a leader among replicas with a Lease; only the leader reconciles.
    #[arg(long, env = "CERTOP_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    #[arg(long, env = "CERTOP_LEASE_NAME", default_value = "certop-leader")]
    pub lease_name: String,
    /// Seconds a leader's lease lasts without renewal: the failover time (3 to 3600).
    #[arg(long, env = "CERTOP_LEASE_DURATION", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_duration: u64,
    /// Objects reconciled at once per controller: bounds the API request
    /// rate and the CPU a burst of issuances takes (key generation and
    /// signing run off the async workers).
    #[arg(long, env = "CERTOP_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Kubernetes API requests per second, sustained (client-go's QPS); 0
    /// for no limit. The leader lease has its own client, never held back.
    #[arg(long, env = "CERTOP_KUBE_API_QPS", default_value_t = 1000.0, value_parser = parse_qps)]
    pub kube_api_qps: f64,
    /// Kubernetes API requests allowed at once before the QPS applies.
    #[arg(long, env = "CERTOP_KUBE_API_BURST", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub kube_api_burst: u32,
    /// This replica's identity in the Lease. Default: the pod name, else host and pid.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[arg(long, env = "CERTOP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Base URL of the CRLs this operator serves, written into issued
    /// certificates as `<base>/crl/<ca>.crl` unless a CA sets its own.
    /// Default: the operator Service, `http://certop.<namespace>.svc`.
    #[arg(long, env = "CERTOP_CRL_BASE_URL")]
    pub crl_base_url: Option<String>,
    /// Longest certificate signed for a CertificateSigningRequest.
    #[arg(long, env = "CERTOP_CSR_MAX_DURATION", default_value = "8760h")]
    pub csr_max_duration: crate::api::GoDuration,
    /// The CertificateAuthority that signs kubelet CSRs (signers
    /// kubernetes.io/kube-apiserver-client-kubelet and kubernetes.io/kubelet-serving).
    /// Unset: certop leaves kubelet CSRs to others.
    #[arg(long, env = "CERTOP_KUBELET_SIGNER_CA")]
    pub kubelet_signer_ca: Option<String>,
    /// Approve kubelet CSRs that pass the identity checks, deny the others.
    /// A serving CSR is approved only for names the node cannot invent (the
    /// three flags below); one with any other name is left for a person.
    #[arg(long, env = "CERTOP_APPROVE_KUBELET_CSRS", default_value_t = false, action = clap::ArgAction::Set)]
    pub approve_kubelet_csrs: bool,
    /// A regular expression (Rust regex syntax) that a kubelet serving
    /// certificate's DNS name may match whole, besides the node's own name,
    /// to be approved; `{node}` stands for the node's name, matched
    /// literally: `{node}\.nodes\.example\.com`. Unset: only the node's name.
    #[arg(long, env = "CERTOP_KUBELET_SERVING_DNS_PATTERN", value_parser = DnsPattern::parse)]
    pub kubelet_serving_dns_pattern: Option<DnsPattern>,
    /// DNS names, comma-separated, never approved for a kubelet
    /// automatically, even as a node's own name (whoever joins a node
    /// chooses its name): the API server's external name, e.g.
    /// `--kubelet-serving-reserved-names=k8s-api.example.com`.
    #[arg(
        long,
        env = "CERTOP_KUBELET_SERVING_RESERVED_NAMES",
        value_delimiter = ','
    )]
    pub kubelet_serving_reserved_names: Vec<String>,
    /// CIDRs, comma-separated (`10.0.0.0/16,fd00:10::/64`), that each IP of a
    /// kubelet serving certificate must be inside to be approved (and be no
    /// other Node's address). Unset: no IP is approved.
    #[arg(long, env = "CERTOP_KUBELET_SERVING_IP_PREFIXES", value_delimiter = ',', value_parser = crate::policy::pattern::parse_network)]
    pub kubelet_serving_ip_prefixes: Vec<IpNet>,
    /// The cluster's Service CIDR, or two comma-separated for dual-stack
    /// (kube-apiserver's --service-cluster-ip-range): no IP inside is ever
    /// approved for a kubelet.
    #[arg(long, env = "CERTOP_SERVICE_CIDR", value_delimiter = ',', default_value = DEFAULT_SERVICE_CIDR, value_parser = crate::policy::pattern::parse_network)]
    pub service_cidr: Vec<IpNet>,
    /// The namespaces certop writes certificate Secrets and trust bundles
    /// into, comma-separated: the namespaces its RBAC grants (the chart's
    /// `managedNamespaces`). A ClusterCertificate naming another namespace
    /// is refused (NamespaceNotManaged). Unset: every namespace, which
    /// needs the cluster-wide grant.
    #[arg(long, env = "CERTOP_MANAGED_NAMESPACES", value_delimiter = ',')]
    pub managed_namespaces: Vec<String>,
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

pub async fn run(args: RunArgs) -> Result<(), Error> {
    init_logging(args.log_format);
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| Error::CryptoProvider)?;
    // Fail at start, not at exit: the port, the API server, the namespace.
    let listener = super::http::bind(args.http_addr).await?;
    let config = kube::Config::infer().await?;
    let client_error = Error::KubeClient;
    // The leader lease keeps a client of its own, so a busy operator
    // never loses its lease to its own rate limit.
    let lease_client = Client::try_from(config.clone()).map_err(client_error)?;
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(client_error)?
        .with_layer(&super::rate_limit::RateLimitLayer {
            qps: args.kube_api_qps,
            burst: args.kube_api_burst,
        })
        .build();
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

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let http = tokio::spawn(serve(
        listener,
        http_state.clone(),
        stopped(stop_rx.clone()),
    ));

    client
        .apiserver_version()
        .await
        .map_err(Error::ApiServerUnreachable)?;
    match Api::<Namespace>::all(client.clone())
        .get_opt(&args.namespace)
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(Error::NamespaceMissing(args.namespace.clone()));
        }
        // Without permission to read Namespaces the check is skipped; the
        // first write in it will say what is wrong.
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        Err(source) => {
            return Err(Error::NamespaceUnreadable {
                namespace: args.namespace.clone(),
                source,
            });
        }
    }
    // Every replica serves the CRLs, leader or not: they follow the ConfigMaps.
    tokio::spawn(follow_crls(
        client.clone(),
        args.namespace.clone(),
        crls.clone(),
    ));
    http_state.ready.store(true, Ordering::Relaxed);
    let settings = Settings {
        namespace: args.namespace.clone(),
        crl_base_url: args
            .crl_base_url
            .clone()
            .unwrap_or_else(|| format!("http://certop.{}.svc", args.namespace)),
        metrics,
        crls,
        csr_policy: CsrPolicy {
            max_lifetime: args
                .csr_max_duration
                .to_chrono_with_days()
                .unwrap_or_else(|_| chrono::Duration::hours(8760)),
            kubelet_ca: args.kubelet_signer_ca.clone(),
            approve_kubelets: args.approve_kubelet_csrs,
            kubelet_serving: ServingNameRules {
                dns_pattern: args.kubelet_serving_dns_pattern.clone(),
                ip_prefixes: args.kubelet_serving_ip_prefixes.clone(),
                service_cidrs: args.service_cidr.clone(),
                reserved_names: args.kubelet_serving_reserved_names.clone(),
            },
        },
        managed_namespaces: ManagedNamespaces::from_list(&args.managed_namespaces),
    };
    info!(namespace = %args.namespace, http = %args.http_addr, leader_elect = args.leader_elect, managed_namespaces = %settings.managed_namespaces.describe(), "certop started");

    let result = if args.leader_elect {
        run_as_elected(
            &args,
            Clients {
                controllers: client,
                lease: lease_client,
            },
            settings,
            shared,
            stop_rx.clone(),
        )
        .await
    } else {
        run_controllers(
            client,
            settings,
            shared,
            args.concurrency,
            stopped(stop_rx.clone()),
        )
        .await;
        Ok(())
    };
    if result.is_err() {
        // Leadership lost (or never obtainable): exit now, so the process is
        // restarted as a standby; serving on would hold a replica that can
        // never lead again.
        http.abort();
        return result;
    }
    if let Ok(Err(e)) = http.await {
        error!(error = %e, "HTTP server failed");
    }
    result
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
    args: &RunArgs,
    clients: Clients,
    settings: Settings,
    shared: SharedStores,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let client = clients.controllers;
    let manager = LeaseManagerBuilder::new(clients.lease, &args.lease_name)
        .with_namespace(&args.namespace)
        .with_identity(&identity)
        .with_duration(args.lease_duration)
        .with_grace((args.lease_duration / 3).max(1))
        .build()
        .await?;
    let (mut leader, lease_task) = manager.watch().await;
    info!(%identity, lease = %args.lease_name, "waiting for the leader lease");
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
        _ = run_controllers(client, settings, shared, args.concurrency, stop_for_controllers) => Ok(()),
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
        if let Some(c) = super::conditions::find(&s.conditions, super::conditions::READY) {
            (&c.status, &c.reason, &c.message).hash(&mut h);
        }
    }
    h.finish()
}
