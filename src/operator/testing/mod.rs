//! Fixtures the controllers' scenario tests share: a fake API server
//! holding a Ready CA, and a Context whose stores a test fills.

pub mod fake_api;
mod scenarios;
mod untrusted_input;

use std::sync::Arc;

use chrono::{Duration, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::json;

use crate::api::{CertificateAuthority, CertificatePolicy, CertificateRevocation, meta};
use crate::operator::runtime::certificate_store::CertificateStore;
use crate::operator::runtime::context::Settings;
use crate::operator::runtime::managed_namespaces::ManagedNamespaces;
use crate::operator::runtime::metrics::Metrics;
use crate::operator::runtime::pod_certificate_api::PodCertificateApi;
use crate::operator::signing_request::CsrPolicy;
use crate::operator::store::crl::CrlCache;
use crate::operator::testing::fake_api::FakeApi;
use crate::operator::{Context, Stores};
use crate::pki::{Authority, CaRequest};

/// certop's namespace in the fixtures.
pub const NS: &str = "certop-system";

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Replaces what a store holds, as a watch's initial list would.
pub fn init<K: Resource + Clone>(w: &mut Writer<K>, objects: Vec<K>)
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    w.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        w.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    w.apply_watcher_event(&watcher::Event::InitDone);
}

/// A CA named `name` made a day ago, as in a running cluster: its key in
/// the Secret `<name>-ca` and the CertificateAuthority bound to it, Ready,
/// with `spec` merged over a minimal one.
pub fn put_ready_ca(api: &FakeApi, name: &str, spec: serde_json::Value) -> Authority {
    let authority =
        Authority::create(&CaRequest::new("test CA"), Utc::now() - Duration::days(1)).expect("CA");
    let secret = format!("{name}-ca");
    api.put(
        &format!("/api/v1/namespaces/{NS}/secrets/{secret}"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": NS},
               "type": "kubernetes.io/tls",
               "data": {"tls.crt": b64(authority.certificate_pem().as_bytes()), "tls.key": b64(authority.key_pem().as_bytes())}}),
    );
    let mut full_spec = json!({"subject": {"commonName": "test CA"}});
    if let (Some(full), Some(extra)) = (full_spec.as_object_mut(), spec.as_object()) {
        full.extend(extra.clone());
    }
    api.put(
        &format!("/apis/certop.dev/v1/certificateauthorities/{name}"),
        json!({"apiVersion": "certop.dev/v1", "kind": "CertificateAuthority",
               "metadata": {"name": name, "annotations": {meta::CA_FINGERPRINT: authority.certificate().fingerprint}},
               "spec": full_spec,
               "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
    );
    authority
}

/// The writers of the Context's stores, for a scenario to fill.
pub struct Writers {
    pub cas: Writer<CertificateAuthority>,
    pub certificates: CertificateStore,
    pub revocations: Writer<CertificateRevocation>,
    pub policies: Writer<CertificatePolicy>,
    pub ca_secrets: Writer<PartialObjectMeta<Secret>>,
}

/// A Context over `api`, its stores empty (and listed) until a test fills them.
pub fn context(
    api: &FakeApi,
    csr_policy: CsrPolicy,
    managed_namespaces: ManagedNamespaces,
) -> (Arc<Context>, Writers) {
    let (cas, mut ca_writer) = reflector::store::<CertificateAuthority>();
    let certificates = CertificateStore::default();
    let (revocations, mut rev_writer) = reflector::store::<CertificateRevocation>();
    let (policies, mut policy_writer) = reflector::store::<CertificatePolicy>();
    let (ca_secrets, mut secret_writer) = reflector::store::<PartialObjectMeta<Secret>>();
    init(&mut ca_writer, Vec::new());
    certificates.replace(Vec::new());
    init(&mut rev_writer, Vec::new());
    init(&mut policy_writer, Vec::new());
    init(&mut secret_writer, Vec::new());
    let settings = Settings {
        namespace: NS.into(),
        crl_base_url: "http://certop.test".into(),
        metrics: Arc::new(Metrics::default()),
        crls: Arc::new(CrlCache::default()),
        csr_policy,
        managed_namespaces,
        pod_certificate_api: PodCertificateApi::SERVED,
    };
    let stores = Stores {
        cas,
        certificates: certificates.clone(),
        revocations,
        policies,
        ca_secrets,
    };
    let ctx = Context::new(api.client(), settings, stores);
    // Each scenario pass finishes what it starts; the deferral of records
    // has a scenario of its own.
    ctx.ledger_groups.set_deferral(false);
    (
        Arc::new(ctx),
        Writers {
            cas: ca_writer,
            certificates,
            revocations: rev_writer,
            policies: policy_writer,
            ca_secrets: secret_writer,
        },
    )
}

/// Every object of one kind the fake API holds, typed.
/// The stores of the CAs and of their key Secrets' metadata see what the
/// fake API server holds, as if their watches caught up.
pub fn sync_cas(api: &FakeApi, w: &mut Writers) {
    let secrets = api
        .list("/api/v1", "secrets", Some(NS))
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Secret>(v).ok())
        .map(|s| PartialObjectMeta::<Secret> {
            metadata: s.metadata,
            ..Default::default()
        })
        .collect();
    init(&mut w.ca_secrets, secrets);
    init(
        &mut w.cas,
        all(api, "/apis/certop.dev/v1", "certificateauthorities"),
    );
}

pub fn all<K: serde::de::DeserializeOwned>(api: &FakeApi, prefix: &str, plural: &str) -> Vec<K> {
    api.list(prefix, plural, None)
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}

/// A single-threaded runtime for a scenario.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
