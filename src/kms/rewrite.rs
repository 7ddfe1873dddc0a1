//! `certop kms rewrite`: every object of the resources the plugin encrypts
//! stored again, so etcd holds it under the current KEK; then proof, from
//! the whole of etcd's `/registry` (not only those resources), of which
//! KEKs stored objects still need, and retirement of the ones none needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams, TypeMeta};
use kube::discovery::{ApiGroup, Scope};
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::KmsError;
use super::encryption_config::Resource;
use super::envelope;
use super::key_dir::KeyDir;

/// How many objects are stored again at once.
pub const CONCURRENCY: usize = 16;

/// Where kube-apiserver keeps every object (its default `--etcd-prefix`).
pub const REGISTRY_PREFIX: &str = "/registry/";

/// The prefix the API server writes before a KMS v2 envelope.
pub const KMS_V2_PREFIX: &[u8] = b"k8s:enc:kms:v2:";

/// How an object is stored in etcd, as far as KEKs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Encrypted by the KMS v2 provider `provider` under KEK `key_id`.
    Kms { provider: String, key_id: String },
    /// Not encrypted (protobuf or JSON as the API server writes it).
    Plain,
    /// Another transformer's prefix (aescbc, secretbox, kms v1, ...).
    Other(String),
}

/// The API server's KMS v2 envelope (k8s.io/apiserver's
/// `kmsv2/v2/api.proto`): only the fields read here.
#[derive(Clone, PartialEq, prost::Message)]
struct EncryptedObject {
    #[prost(bytes = "vec", tag = "1")]
    encrypted_data: Vec<u8>,
    #[prost(string, tag = "2")]
    key_id: String,
    #[prost(bytes = "vec", tag = "3")]
    encrypted_dek_source: Vec<u8>,
}

/// Reads what etcd holds for one object. Pure; any bytes are classified,
/// never a panic.
pub fn classify(value: &[u8]) -> Stored {
    if let Some(rest) = value.strip_prefix(KMS_V2_PREFIX) {
        let Some(colon) = rest.iter().position(|b| *b == b':') else {
            return Stored::Other("k8s:enc:kms:v2 (no provider name)".into());
        };
        let provider = String::from_utf8_lossy(&rest[..colon]).into_owned();
        let object = <EncryptedObject as prost::Message>::decode(&rest[colon + 1..]);
        let key_id = match object {
            Ok(o) if !o.key_id.is_empty() => o.key_id,
            Ok(o) => envelope::key_id_of(&o.encrypted_dek_source)
                .map(str::to_string)
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        return Stored::Kms { provider, key_id };
    }
    if value.starts_with(b"k8s\x00") || value.starts_with(b"{") {
        return Stored::Plain;
    }
    let prefix: String = value
        .iter()
        .take(24)
        .take_while(|b| b.is_ascii_graphic())
        .map(|b| char::from(*b))
        .collect();
    Stored::Other(prefix)
}

/// How to reach etcd (the API server's own client certificate on a
/// control-plane node: /etc/kubernetes/pki/apiserver-etcd-client.*).
#[derive(Clone, Debug, Default)]
pub struct EtcdAccess {
    pub endpoint: String,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

impl EtcdAccess {
    fn err(&self, reason: impl std::fmt::Display) -> KmsError {
        KmsError::Etcd {
            endpoint: self.endpoint.clone(),
            reason: reason.to_string(),
        }
    }

    fn client(&self) -> Result<HttpClient<Https, Full<bytes::Bytes>>, KmsError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &self.ca {
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| self.err(e))? {
                roots
                    .add(c.map_err(|e| self.err(e))?)
                    .map_err(|e| self.err(e))?;
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| self.err(e))?
            .with_root_certificates(roots);
        let tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| self.err(e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| self.err(e))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| self.err(e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| self.err(e))?
            }
            _ => builder.with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpClient::builder(TokioExecutor::new()).build(connector))
    }

    /// Every key under `prefix` with its value, through etcd's JSON gateway
    /// (`/v3/kv/range`), a page at a time.
    pub async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KmsError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let client = self.client()?;
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let url = format!("{}/v3/kv/range", self.endpoint.trim_end_matches('/'));
        let mut from = prefix.as_bytes().to_vec();
        let mut out = Vec::new();
        loop {
            let body = serde_json::json!({
                "key": b64.encode(&from),
                "range_end": b64.encode(&end),
                "limit": 500,
            });
            let request = http::Request::post(&url)
                .header("content-type", "application/json")
                .body(Full::new(bytes::Bytes::from(body.to_string())))
                .map_err(|e| self.err(e))?;
            let response = client.request(request).await.map_err(|e| self.err(e))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.err(e))?
                .to_bytes();
            if !status.is_success() {
                return Err(self.err(format!("{status}: {}", String::from_utf8_lossy(&bytes))));
            }
            let page: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| self.err(e))?;
            let kvs = page["kvs"].as_array().cloned().unwrap_or_default();
            for kv in &kvs {
                let decode = |field: &str| {
                    kv[field]
                        .as_str()
                        .and_then(|s| b64.decode(s).ok())
                        .unwrap_or_default()
                };
                out.push((
                    String::from_utf8_lossy(&decode("key")).into_owned(),
                    decode("value"),
                ));
            }
            let more = page["more"].as_bool().unwrap_or(false);
            match (more, out.last()) {
                (true, Some((last, _))) => {
                    from = last.as_bytes().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }
}

/// What etcd holds under the API server's whole prefix, by etcd key.
pub async fn stored_everywhere(etcd: &EtcdAccess) -> Result<BTreeMap<String, Stored>, KmsError> {
    Ok(etcd
        .scan(REGISTRY_PREFIX)
        .await?
        .into_iter()
        .map(|(k, v)| (k, classify(&v)))
        .collect())
}

/// What the stored objects say about the key directory's KEKs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Stored objects per KEK id named in a KMS v2 envelope (any KEK,
    /// this directory's or not).
    pub by_key: BTreeMap<String, usize>,
    /// Objects (etcd keys) under a KEK of the directory other than the
    /// current one, or in a KMS v2 envelope whose KEK cannot be read: the
    /// ones a rewrite has to move before a KEK can go.
    pub stale: BTreeMap<String, String>,
}

/// What to do with the directory's old KEKs, given what etcd holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Retirement {
    /// Nothing in etcd needs these (every KEK but the current one that no
    /// stored envelope names).
    Retire(Vec<String>),
    /// Objects still need an old KEK (or an unreadable envelope might):
    /// rewrite them, then look again.
    Stale,
    /// No object is under the current KEK yet: kube-apiserver may not have
    /// noticed the rotation and may still write under the old one.
    CurrentUnused,
}

impl Census {
    /// Counts `stored` against the directory's `keks`. Pure.
    pub fn of(stored: &BTreeMap<String, Stored>, keks: &BTreeSet<String>, current: &str) -> Census {
        let mut census = Census::default();
        for (key, value) in stored {
            let Stored::Kms { key_id, .. } = value else {
                continue;
            };
            *census.by_key.entry(key_id.clone()).or_default() += 1;
            if key_id.is_empty() || (key_id != current && keks.contains(key_id)) {
                census.stale.insert(key.clone(), key_id.clone());
            }
        }
        census
    }

    /// A KEK is retired only when no envelope anywhere in etcd names it,
    /// none is unreadable, and the API server is seen using the current
    /// one (so it writes nothing more under an old one). Pure.
    pub fn retirement(&self, keks: &BTreeSet<String>, current: &str) -> Retirement {
        if !self.stale.is_empty() {
            return Retirement::Stale;
        }
        if !self.by_key.contains_key(current) {
            return Retirement::CurrentUnused;
        }
        Retirement::Retire(
            keks.iter()
                .filter(|id| *id != current && !self.by_key.contains_key(*id))
                .cloned()
                .collect(),
        )
    }

    /// The error for objects that still need an old KEK.
    fn still_needed(&self) -> KmsError {
        let (example, id) = self
            .stale
            .iter()
            .next()
            .map(|(k, id)| (k.clone(), id.clone()))
            .unwrap_or_default();
        KmsError::StillNeeded {
            id: if id.is_empty() {
                "unknown (an envelope whose KEK id cannot be read)".into()
            } else {
                id
            },
            count: self.stale.len(),
            example,
        }
    }
}

/// An object that could not be stored again, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub object: String,
    pub reason: String,
}

/// The outcome of a rewrite pass: how many objects per resource were
/// stored again, and what failed (the pass goes on past each failure).
#[derive(Debug, Default)]
pub struct Rewritten {
    pub count: BTreeMap<String, usize>,
    pub failures: Vec<Failure>,
}

/// Why a resource to rewrite is not in the API server's discovery: its
/// group or its plural name is not served (check `--resources`).
#[derive(Debug, thiserror::Error)]
enum Undiscovered {
    #[error("the API server does not serve group {group:?}: {source}")]
    Group { group: String, source: kube::Error },
    #[error("the API server does not serve resource {0}")]
    Resource(String),
}

/// Finds `resource` in the API server's discovery (its preferred version,
/// whether it is namespaced).
async fn discover(
    client: &kube::Client,
    groups: &mut BTreeMap<String, ApiGroup>,
    resource: &Resource,
) -> Result<(ApiResource, bool), Undiscovered> {
    if !groups.contains_key(&resource.group) {
        let group = kube::discovery::group(client, &resource.group)
            .await
            .map_err(|source| Undiscovered::Group {
                group: resource.group.clone(),
                source,
            })?;
        groups.insert(resource.group.clone(), group);
    }
    groups
        .get(&resource.group)
        .and_then(|g| {
            g.recommended_resources()
                .into_iter()
                .find(|(ar, _)| ar.plural == resource.plural)
        })
        .map(|(ar, caps)| (ar, caps.scope == Scope::Namespaced))
        .ok_or_else(|| Undiscovered::Resource(resource.to_string()))
}

/// Stores one object again as it is: the API server re-encrypts it with
/// its current data key (under the plugin's current KEK). A conflict means
/// someone wrote it meanwhile, which re-encrypted it too.
async fn rewrite_one(
    client: &kube::Client,
    ar: &ApiResource,
    namespaced: bool,
    mut object: DynamicObject,
) -> Result<(), Failure> {
    let name = object.name_any();
    let namespace = object.namespace().filter(|_| namespaced);
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    // List items carry no kind; a PUT needs it.
    object.types = Some(TypeMeta {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
    });
    match api.replace(&name, &PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(Failure {
            object: match namespace {
                Some(ns) => format!("{}/{ns}/{name}", ar.plural),
                None => format!("{}/{name}", ar.plural),
            },
            reason: e.to_string(),
        }),
    }
}

/// Runs `store` on every item, [`CONCURRENCY`] at a time; a failure is
/// recorded and the others go on. Returns how many were stored.
async fn store_each<T, F, Fut>(items: Vec<T>, store: F) -> (usize, Vec<Failure>)
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let results: Vec<Result<(), Failure>> = futures::stream::iter(items)
        .map(store)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut stored = 0;
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(()) => stored += 1,
            Err(failure) => {
                warn!(object = %failure.object, reason = %failure.reason, "not rewritten");
                failures.push(failure);
            }
        }
    }
    (stored, failures)
}

/// Stores again every object of `resources`, [`CONCURRENCY`] at a time,
/// reporting progress. A failure (an object the API server cannot read or
/// will not store, a resource it does not serve) is recorded and the pass
/// goes on.
pub async fn rewrite_all(
    client: &kube::Client,
    resources: &BTreeSet<Resource>,
    progress: impl Fn(&Resource, usize),
) -> Rewritten {
    let mut out = Rewritten::default();
    let mut groups = BTreeMap::new();
    for resource in resources {
        let (ar, namespaced) = match discover(client, &mut groups, resource).await {
            Ok(found) => found,
            Err(e) => {
                out.failures.push(Failure {
                    object: resource.to_string(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let mut params = ListParams::default().limit(500);
        let mut done = 0;
        loop {
            let page = match all.list(&params).await {
                Ok(page) => page,
                Err(e) => {
                    out.failures.push(Failure {
                        object: resource.to_string(),
                        reason: format!("listing: {e}"),
                    });
                    break;
                }
            };
            let (stored, failures) =
                store_each(page.items, |o| rewrite_one(client, &ar, namespaced, o)).await;
            done += stored;
            out.failures.extend(failures);
            progress(resource, done);
            match crate::list_pages::next(&params, &page.metadata) {
                Some(next) => params = next,
                None => break,
            }
        }
        out.count.insert(resource.to_string(), done);
    }
    out
}

/// The outcome of a rewrite with proof.
#[derive(Debug, Default)]
pub struct Proof {
    /// Stored objects per KEK id, over the whole of etcd.
    pub by_key: BTreeMap<String, usize>,
    pub retired: Vec<String>,
    /// Objects the retries could not store again.
    pub failures: Vec<Failure>,
}

/// Until etcd, all of it, shows no object under a KEK of the directory but
/// the current one (the API server takes up to a minute to notice a
/// rotation), stores `resources` again; then retires every KEK nothing in
/// etcd needs. Objects under an old KEK outside `resources` are never
/// moved, so their KEK stays and the error names one of them.
pub async fn prove_and_retire(
    client: &kube::Client,
    dir: &KeyDir,
    etcd: &EtcdAccess,
    resources: &BTreeSet<Resource>,
    patience: Duration,
) -> Result<Proof, KmsError> {
    let started = Instant::now();
    let mut failures = BTreeMap::new();
    loop {
        let keys = dir.load()?;
        let keks: BTreeSet<String> = keys.ids().map(str::to_string).collect();
        let census = Census::of(&stored_everywhere(etcd).await?, &keks, &keys.current);
        let pending = match census.retirement(&keks, &keys.current) {
            Retirement::Retire(ids) => {
                for id in &ids {
                    dir.retire(id)?;
                    info!(kek = %id, "retired: nothing in etcd needs it");
                }
                return Ok(Proof {
                    by_key: census.by_key,
                    retired: ids,
                    failures: failures
                        .into_iter()
                        .map(|(object, reason)| Failure { object, reason })
                        .collect(),
                });
            }
            Retirement::Stale => census.still_needed(),
            Retirement::CurrentUnused => KmsError::CurrentUnused(keys.current.clone()),
        };
        if started.elapsed() > patience {
            return Err(pending);
        }
        // Store again the resources whose etcd keys are among the stale
        // ones (`/registry/secrets/...`, `/registry/example.com/widgets/...`),
        // or all of them when none matches.
        let dirty: BTreeSet<Resource> = resources
            .iter()
            .filter(|r| {
                census
                    .stale
                    .keys()
                    .any(|k| k.split('/').any(|part| part == r.plural))
            })
            .cloned()
            .collect();
        let again = if dirty.is_empty() { resources } else { &dirty };
        let pass = rewrite_all(client, again, |_, _| {}).await;
        for f in pass.failures {
            failures.insert(f.object, f.reason);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stored_values_are_told_apart() {
        let sealed = envelope::seal("kek-1", &[1; 32], b"seed").expect("seal");
        let object = EncryptedObject {
            encrypted_data: b"data".to_vec(),
            key_id: "kek-1".into(),
            encrypted_dek_source: sealed,
        };
        let mut value = b"k8s:enc:kms:v2:certop:".to_vec();
        value.extend(prost::Message::encode_to_vec(&object));
        assert_eq!(
            classify(&value),
            Stored::Kms {
                provider: "certop".into(),
                key_id: "kek-1".into()
            }
        );
        assert_eq!(classify(b"k8s\x00\n\x0cv1..."), Stored::Plain);
        assert_eq!(classify(b"{\"kind\":\"Secret\"}"), Stored::Plain);
        assert_eq!(
            classify(b"k8s:enc:aescbc:v1:key1:xyz"),
            Stored::Other("k8s:enc:aescbc:v1:key1:x".into())
        );
    }

    fn kms(key_id: &str) -> Stored {
        Stored::Kms {
            provider: "certop".into(),
            key_id: key_id.into(),
        }
    }

    /// A case: its name, what etcd holds by key, the decision.
    type Case = (&'static str, Vec<(&'static str, Stored)>, Retirement);

    /// Retirement as decided from what etcd holds, over every prefix:
    /// a KEK goes only when nothing anywhere names it.
    #[test]
    fn a_kek_is_retired_only_when_nothing_in_etcd_needs_it() {
        let keks: BTreeSet<String> = ["kek-1", "kek-2", "kek-3"].map(String::from).into();
        let current = "kek-3";
        let retire = |ids: &[&str]| Retirement::Retire(ids.iter().map(|s| s.to_string()).collect());
        let cases: Vec<Case> = vec![
            (
                "everything under the current KEK",
                vec![
                    ("/registry/secrets/a/x", kms("kek-3")),
                    ("/registry/configmaps/a/y", kms("kek-3")),
                ],
                retire(&["kek-1", "kek-2"]),
            ),
            (
                "a ConfigMap under an old KEK keeps it (issue 27 item 9)",
                vec![
                    ("/registry/secrets/a/x", kms("kek-3")),
                    ("/registry/configmaps/a/y", kms("kek-1")),
                ],
                Retirement::Stale,
            ),
            (
                "any prefix counts, a custom resource's too",
                vec![
                    ("/registry/secrets/a/x", kms("kek-3")),
                    ("/registry/example.com/widgets/a/w", kms("kek-2")),
                ],
                Retirement::Stale,
            ),
            (
                "an envelope whose KEK cannot be read keeps every KEK",
                vec![
                    ("/registry/secrets/a/x", kms("kek-3")),
                    ("/registry/secrets/a/y", kms("")),
                ],
                Retirement::Stale,
            ),
            (
                "nothing under the current KEK yet: the API server may still use an old one",
                vec![("/registry/configmaps/a/y", Stored::Plain)],
                Retirement::CurrentUnused,
            ),
            (
                "plain and foreign objects need no KEK; another plugin's KEK is not ours",
                vec![
                    ("/registry/secrets/a/x", kms("kek-3")),
                    ("/registry/pods/a/p", Stored::Plain),
                    (
                        "/registry/events/a/e",
                        Stored::Other("k8s:enc:aescbc:v1:k".into()),
                    ),
                    (
                        "/registry/leases/a/l",
                        Stored::Kms {
                            provider: "other".into(),
                            key_id: "their-key".into(),
                        },
                    ),
                ],
                retire(&["kek-1", "kek-2"]),
            ),
            (
                "an old KEK named under another provider name is still needed",
                vec![
                    ("/registry/secrets/a/x", kms("kek-3")),
                    (
                        "/registry/secrets/a/y",
                        Stored::Kms {
                            provider: "certop-old".into(),
                            key_id: "kek-1".into(),
                        },
                    ),
                ],
                Retirement::Stale,
            ),
        ];
        for (name, stored, want) in cases {
            let stored: BTreeMap<String, Stored> = stored
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            let census = Census::of(&stored, &keks, current);
            assert_eq!(census.retirement(&keks, current), want, "{name}");
        }
    }

    #[test]
    fn what_still_needs_an_old_kek_is_named() {
        let keks: BTreeSet<String> = ["kek-1", "kek-2"].map(String::from).into();
        let stored: BTreeMap<String, Stored> = [
            ("/registry/configmaps/a/y".to_string(), kms("kek-1")),
            ("/registry/secrets/a/x".to_string(), kms("kek-2")),
        ]
        .into();
        let census = Census::of(&stored, &keks, "kek-2");
        assert_eq!(census.by_key.get("kek-1"), Some(&1));
        let said = census.still_needed().to_string();
        assert!(
            said.contains("kek-1") && said.contains("/registry/configmaps/a/y"),
            "{said}"
        );
    }

    /// One object that cannot be stored does not stop the others, and
    /// objects are stored CONCURRENCY at a time, as docs/kms.md says.
    #[tokio::test]
    async fn a_failure_is_recorded_and_the_rest_are_stored_sixteen_at_a_time() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let in_flight = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let (stored, failures) = store_each((0..100).collect(), |i: usize| {
            let (in_flight, most) = (&in_flight, &most);
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                if i == 7 {
                    return Err(Failure {
                        object: "secrets/ns/broken".into(),
                        reason: "cannot decrypt".into(),
                    });
                }
                Ok(())
            }
        })
        .await;
        assert_eq!(stored, 99);
        assert_eq!(
            failures,
            vec![Failure {
                object: "secrets/ns/broken".into(),
                reason: "cannot decrypt".into()
            }]
        );
        assert_eq!(most.load(Ordering::SeqCst), CONCURRENCY);
    }

    proptest! {
        #[test]
        fn any_stored_bytes_are_classified_without_panic(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut value = KMS_V2_PREFIX.to_vec();
            value.extend_from_slice(&tail);
            let _ = classify(&value);
            let _ = classify(&tail);
        }
    }
}
