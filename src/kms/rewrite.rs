//! `certop kms rewrite`: every Secret stored again, so etcd holds it under
//! the current KEK; then proof, from etcd itself, of which KEKs stored
//! objects still need, and retirement of the ones none needs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use tracing::info;

use super::KmsError;
use super::envelope;
use super::key_dir::KeyDir;

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

/// Which KEK each stored Secret needs, by etcd key.
pub async fn stored_key_ids(etcd: &EtcdAccess) -> Result<BTreeMap<String, Stored>, KmsError> {
    Ok(etcd
        .scan("/registry/secrets/")
        .await?
        .into_iter()
        .map(|(k, v)| (k, classify(&v)))
        .collect())
}

/// Stores one Secret again as it is: the API server re-encrypts it with
/// its current data key (under the plugin's current KEK). A conflict means
/// someone wrote it meanwhile, which re-encrypted it too.
async fn rewrite_one(api: &Api<Secret>, secret: &Secret) -> Result<(), KmsError> {
    match api
        .replace(&secret.name_any(), &PostParams::default(), secret)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Rewrites every Secret of the cluster, reporting progress; returns how
/// many it rewrote.
pub async fn rewrite_all(
    client: &kube::Client,
    progress: impl Fn(usize),
) -> Result<usize, KmsError> {
    let all: Api<Secret> = Api::all(client.clone());
    let mut params = ListParams::default().limit(500);
    let mut done = 0;
    loop {
        let page = all.list(&params).await?;
        for s in &page.items {
            let ns: Api<Secret> =
                Api::namespaced(client.clone(), &s.namespace().unwrap_or_default());
            rewrite_one(&ns, s).await?;
            done += 1;
            if done % 500 == 0 {
                progress(done);
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(done)
}

/// The outcome of a rewrite with proof.
#[derive(Debug, Default)]
pub struct Proof {
    /// Stored Secrets per KEK id ("" for a plain or foreign object).
    pub by_key: BTreeMap<String, usize>,
    pub retired: Vec<String>,
}

/// Until etcd shows no Secret under any KEK but the current one (the API
/// server takes up to a minute to notice a rotation), rewrites the Secrets
/// that still use another; then retires every KEK no stored Secret needs.
pub async fn prove_and_retire(
    client: &kube::Client,
    dir: &KeyDir,
    etcd: &EtcdAccess,
    patience: Duration,
) -> Result<Proof, KmsError> {
    let current = dir.load()?.current;
    let started = Instant::now();
    loop {
        let stored = stored_key_ids(etcd).await?;
        let stale: Vec<&String> = stored
            .iter()
            .filter(|(_, s)| !matches!(s, Stored::Kms { key_id, .. } if *key_id == current))
            .map(|(k, _)| k)
            .collect();
        if stale.is_empty() {
            let mut proof = Proof::default();
            for s in stored.values() {
                if let Stored::Kms { key_id, .. } = s {
                    *proof.by_key.entry(key_id.clone()).or_default() += 1;
                }
            }
            let keys = dir.load()?;
            let unused: Vec<String> = keys
                .ids()
                .filter(|id| *id != current && !proof.by_key.contains_key(*id))
                .map(str::to_string)
                .collect();
            for id in unused {
                dir.retire(&id)?;
                info!(kek = %id, "retired: no stored Secret needs it");
                proof.retired.push(id);
            }
            return Ok(proof);
        }
        if started.elapsed() > patience {
            let example = stale.first().map(|s| s.to_string()).unwrap_or_default();
            let id = match stored.get(&example) {
                Some(Stored::Kms { key_id, .. }) => key_id.clone(),
                Some(Stored::Plain) => "none (stored unencrypted)".into(),
                Some(Stored::Other(p)) => format!("none ({p})"),
                None => String::new(),
            };
            return Err(KmsError::StillNeeded {
                id,
                count: stale.len(),
                example,
            });
        }
        for key in stale {
            let mut parts = key.trim_start_matches("/registry/secrets/").splitn(2, '/');
            let (Some(ns), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            if let Some(s) = api.get_opt(name).await? {
                rewrite_one(&api, &s).await?;
            }
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
