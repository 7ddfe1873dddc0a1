use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource};
use tracing::warn;

use crate::operator::Error;
use crate::operator::runtime::backoff::Backoff;
use crate::operator::runtime::certificate_store::CertificateStore;
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::runtime::metrics::Metrics;
use crate::operator::runtime::name_queue::NameQueue;
use crate::operator::runtime::pod_certificate_api::PodCertificateApi;
use crate::operator::signing_request::CsrPolicy;
use crate::operator::store::authority_cache::AuthorityCache;
use crate::operator::store::crl::served::CrlCache;
use crate::operator::store::ledger_store::{RecordGroups, ShardCache};
use crate::operator::store::written_secrets::WrittenSecrets;

/// The field manager of everything certop writes with server-side apply.
pub const FIELD_MANAGER: &str = "certop";
use crate::api::{CertificateAuthority, CertificatePolicy, CertificateRevocation};
use crate::operator::runtime::admission_guard::GuardState;

/// The shared reflector stores every controller reads. No controller
/// starts before all of them have listed (a store still empty at start or
/// failover would make a CSR fail for good or skip a revoke-on-delete).
#[derive(Clone)]
pub struct Stores {
    pub cas: Store<CertificateAuthority>,
    pub certificates: CertificateStore,
    pub revocations: Store<CertificateRevocation>,
    pub policies: Store<CertificatePolicy>,
    /// Secrets of the operator's namespace, metadata only: CA key Secrets'
    /// resourceVersions, so a CA key is fetched only when it changed.
    pub ca_secrets: Store<PartialObjectMeta<Secret>>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// The operator's namespace: CA Secrets live here.
    pub namespace: String,
    pub recorder: Recorder,
    /// Who reports certop's Events (the pod, when it runs in one).
    reporter: Reporter,
    events_sent: EventsSent,
    pub metrics: Arc<Metrics>,
    pub authorities: AuthorityCache,
    /// CertificateAuthorities as the CA controller's reflector sees them.
    pub cas: Store<CertificateAuthority>,
    /// ClusterCertificates as their watch shows them, packed.
    pub certificates: CertificateStore,
    pub revocations: Store<CertificateRevocation>,
    pub policies: Store<CertificatePolicy>,
    /// Whether the admission guard of `spec.policyRef` is in force.
    pub guard: GuardState,
    pub ca_secrets: Store<PartialObjectMeta<Secret>>,
    /// Per-object backoff after errors.
    pub backoff: Backoff,
    /// The CRLs this replica serves; the leader offers each one it signs.
    pub crls: Arc<CrlCache>,
    /// Base of the default CRL distribution point: `<base>/crl/<ca>.crl`.
    pub crl_base_url: String,
    /// What to do with CertificateSigningRequests.
    pub csr_policy: CsrPolicy,
    /// Where certificate Secrets and trust bundles may be written.
    pub managed_namespaces: ManagedNamespaces,
    /// The ledger shards as last written, the base of the next write.
    pub ledger_shards: ShardCache,
    /// The ledger records waiting for their shard's write (group commit).
    pub ledger_groups: RecordGroups,
    /// The certificate Secrets as certop last wrote them, read by the
    /// passes their own echoes start instead of a GET.
    pub written_secrets: WrittenSecrets,
    /// The certificate controller's queue of names (`name_queue`): each
    /// certificate's next look, and what kube-runtime may take.
    pub certificate_queue: Arc<NameQueue>,
    /// Permits for PodCertificateRequest status writes in flight
    /// (`pod_certificate::STATUS_WRITES_IN_FLIGHT`).
    pub pod_certificate_writes: tokio::sync::Semaphore,
    /// Whether the API server serves PodCertificateRequests and ClusterTrustBundles.
    pub pod_certificate_api: PodCertificateApi,
    /// One CRL signer at a time per CA, so numbers are never raced for.
    crl_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// How the controllers are configured (from `certop run`'s flags).
pub struct Settings {
    pub namespace: String,
    pub crl_base_url: String,
    pub metrics: Arc<Metrics>,
    pub crls: Arc<CrlCache>,
    pub csr_policy: CsrPolicy,
    pub managed_namespaces: ManagedNamespaces,
    /// Filled from discovery when the controllers start.
    pub pod_certificate_api: PodCertificateApi,
}

impl Context {
    pub fn new(client: Client, settings: Settings, stores: Stores) -> Self {
        let Settings {
            namespace,
            crl_base_url,
            metrics,
            crls,
            csr_policy,
            managed_namespaces,
            pod_certificate_api,
        } = settings;
        let reporter = Reporter {
            controller: "certop".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            reporter,
            events_sent: EventsSent::default(),
            client,
            namespace,
            metrics,
            authorities: AuthorityCache::default(),
            cas: stores.cas,
            certificates: stores.certificates,
            revocations: stores.revocations,
            policies: stores.policies,
            guard: GuardState::default(),
            ca_secrets: stores.ca_secrets,
            backoff: Backoff::default(),
            crls,
            crl_base_url,
            csr_policy,
            managed_namespaces,
            ledger_shards: ShardCache::default(),
            ledger_groups: RecordGroups::default(),
            written_secrets: WrittenSecrets::default(),
            certificate_queue: Arc::default(),
            pod_certificate_writes: tokio::sync::Semaphore::new(
                crate::operator::pod_certificate::STATUS_WRITES_IN_FLIGHT,
            ),
            pod_certificate_api,
            crl_locks: Default::default(),
        }
    }

    /// The lock that serializes CRL signing for one CA.
    pub fn crl_lock(&self, ca: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.crl_locks.lock() {
            Ok(mut locks) => locks.entry(ca.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// The API server's Service addresses (the first of each `--service-cidr`):
    /// privileged identities no policy allows by a pattern.
    pub fn api_server_ips(&self) -> Vec<std::net::IpAddr> {
        crate::core::policy::privileged::api_server_ips(
            &self.csr_policy.kubelet_serving.service_cidrs,
        )
    }

    /// The default CRL distribution point of key `index` of a CA.
    pub fn default_crl_url(&self, ca: &str, index: u32) -> String {
        format!(
            "{}/crl/{}.crl",
            self.crl_base_url.trim_end_matches('/'),
            crate::operator::store::crl::served::crl_path(ca, index)
        )
    }

    /// Writes an object's status with server-side apply, as field manager
    /// `certop`: only the fields certop sets, and no read-modify-write race.
    pub async fn apply_status<K>(
        &self,
        name: &str,
        status: &impl serde::Serialize,
    ) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        Ok(())
    }

    pub fn operator_secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Records an Event on a (cluster-scoped) object; Events land in the
    /// `default` namespace, where `kubectl describe` finds them. A failure to
    /// record is logged, never fatal. The recorder folds Events with the same
    /// reason and action into one series, so `action` tells apart those that
    /// must each be seen (one per issued revision).
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let regarding = obj.object_ref(&());
        // The recorder names an Event after the object, whole: past 253
        // characters the API server refuses it, so an object with a long
        // name (a CA too long for its Secret name, InvalidSpec) would get
        // none. Those are recorded directly, under a name cut to fit.
        let name_len = regarding.name.as_ref().map_or(0, String::len);
        if name_len + EVENT_SUFFIX_LEN > MAX_NAME {
            self.create_event(regarding, warning, reason, action, note)
                .await;
            return;
        }
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(truncate(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &regarding).await {
            warn!(error = %e, reason, "cannot record event");
        }
    }
}

/// The longest object name the API server accepts (a DNS subdomain).
const MAX_NAME: usize = 253;
/// What an Event's name adds to its object's: a dot and the time in
/// nanoseconds, in hex (16 digits until 2262).
const EVENT_SUFFIX_LEN: usize = 17;

/// An Event's name: its object's, cut so the whole stays within
/// `MAX_NAME` (and still ends a DNS label with a letter or digit), a dot
/// and the time in nanoseconds in hex, as the recorder names them. Pure.
fn event_name(regarding: &str, nanos: i128) -> String {
    let suffix = format!(".{nanos:x}");
    let room = MAX_NAME.saturating_sub(suffix.len());
    let base = regarding
        .get(..room.min(regarding.len()))
        .unwrap_or("certop");
    let base = base.trim_end_matches(['-', '.']);
    format!("{base}{suffix}")
}

impl Context {
    /// Records an Event that never repeats (one per issued revision) as it
    /// is: not through the recorder, which keeps a full copy of every Event
    /// for six minutes to fold repeats into a series. At 10,000 issuances
    /// those copies were the operator's largest use of memory
    /// (docs/benchmarks.md). Logged, never fatal, as `event`.
    /// The same reason and action on the same object twice within six
    /// minutes (a pass that ran on a store not yet showing the first one's
    /// status) is recorded once.
    pub async fn event_once<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let regarding = obj.object_ref(&());
        if !self.events_sent.first(&(
            &regarding.uid,
            &regarding.namespace,
            &regarding.name,
            reason,
            action,
        )) {
            return;
        }
        self.create_event(regarding, false, reason, action, note)
            .await;
    }

    /// Creates one Event, not through the recorder; logged, never fatal.
    async fn create_event(
        &self,
        regarding: k8s_openapi::api::core::v1::ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = K8sEvent {
            metadata: kube::api::ObjectMeta {
                name: Some(event_name(
                    regarding.name.as_deref().unwrap_or("certop"),
                    now.as_nanosecond(),
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(truncate(note, 1000)),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..Default::default()
        };
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = events.create(&PostParams::default(), &event).await {
            warn!(error = %e, reason, "cannot record event");
        }
    }
}

/// Hashes of the Events `event_once` recorded in the last six minutes
/// (16 bytes each, where the recorder keeps a whole Event).
#[derive(Default)]
struct EventsSent {
    sent: std::sync::Mutex<(HashMap<u64, Instant>, Option<Instant>)>,
}

impl EventsSent {
    const TTL: Duration = Duration::from_secs(6 * 60);

    /// Whether `key` is new (and remembers it).
    fn first(&self, key: &impl std::hash::Hash) -> bool {
        use std::hash::Hasher;
        let hash = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            h.finish()
        };
        let now = Instant::now();
        let Ok(mut guard) = self.sent.lock() else {
            return true;
        };
        let (sent, pruned) = &mut *guard;
        // Pruned at most once a minute, not on every Event.
        if pruned.is_none_or(|p| now.duration_since(p) > Duration::from_secs(60)) {
            sent.retain(|_, at| now.duration_since(*at) < Self::TTL);
            *pruned = Some(now);
        }
        match sent.get(&hash) {
            Some(at) if now.duration_since(*at) < Self::TTL => false,
            _ => {
                sent.insert(hash, now);
                true
            }
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_name_fits_whatever_its_objects_name() {
        let nanos = 1_796_000_000_000_000_000_i128;
        assert_eq!(event_name("web", nanos), format!("web.{nanos:x}"));
        for name in [
            "c".repeat(251),
            "c".repeat(253),
            format!("{}-x", "a".repeat(235)),
        ] {
            let event = event_name(&name, nanos);
            assert!(event.len() <= MAX_NAME, "{} characters", event.len());
            assert!(event.ends_with(&format!(".{nanos:x}")));
            let base = event.trim_end_matches(&format!(".{nanos:x}"));
            assert!(
                base.ends_with(|c: char| c.is_ascii_alphanumeric()),
                "{event}"
            );
        }
        assert_eq!(format!(".{nanos:x}").len(), EVENT_SUFFIX_LEN);
    }

    #[test]
    fn an_event_is_recorded_once_per_object_reason_and_action() {
        let sent = EventsSent::default();
        assert!(sent.first(&("uid-a", "Issued", "IssueRevision1")));
        assert!(!sent.first(&("uid-a", "Issued", "IssueRevision1")));
        assert!(sent.first(&("uid-a", "Issued", "IssueRevision2")));
        assert!(sent.first(&("uid-b", "Issued", "IssueRevision1")));
        assert!(sent.first(&("uid-a", "Renewed", "IssueRevision1")));
    }
}
