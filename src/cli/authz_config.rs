//! `certop authz-config`: what kube-apiserver needs to ask certop's
//! authorization webhook first: an AuthorizationConfiguration (certop,
//! then Node, then RBAC) and the webhook kubeconfig it names, trusting the
//! CA that signs the webhook's serving certificate.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::config::{Cluster, Context, Kubeconfig, NamedCluster, NamedContext};
use serde_json::json;

use super::CliError;
use super::cluster::Cluster as ClusterConnection;
use super::files::{OutputFile, write_all};
use crate::api::{CertificateAuthority, ca_key_pair};
use crate::core::authz::{CREDENTIAL_ID_KEY, X509_PREFIX};
use crate::core::rotation::{key_secret_name, stored_marks};

/// The file names `authz-config` writes into `--out`.
pub const CONFIG_FILE: &str = "authorization-config.yaml";
pub const KUBECONFIG_FILE: &str = "certop-authz-webhook.kubeconfig";

/// What kube-apiserver does when the webhook cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FailurePolicy {
    /// certop down: revocation is not enforced, RBAC decides as before.
    #[default]
    #[value(name = "NoOpinion")]
    NoOpinion,
    /// certop down: every request made with a client certificate is refused.
    #[value(name = "Deny")]
    Deny,
}

impl FailurePolicy {
    fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::NoOpinion => "NoOpinion",
            FailurePolicy::Deny => "Deny",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct AuthzConfigArgs {
    /// The CertificateAuthority that signs the webhook's serving
    /// certificate (`certop run --authz-ca`).
    #[arg(long)]
    pub ca: String,
    /// The webhook's URL as kube-apiserver dials it, e.g. https://10.0.0.5:8443.
    #[arg(long)]
    pub server: String,
    /// The directory to write the two files into.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = FailurePolicy::NoOpinion)]
    pub failure_policy: FailurePolicy,
    /// certop's namespace, where the CA's key Secrets are.
    #[arg(long, default_value = "certop-system")]
    pub namespace: String,
}

/// The CEL condition that sends a request to certop: only those made with
/// a client certificate (a ServiceAccount token or an OIDC token never is).
pub fn match_condition() -> String {
    format!(
        "has(request.extra) && '{CREDENTIAL_ID_KEY}' in request.extra && request.extra['{CREDENTIAL_ID_KEY}'].exists(id, id.startsWith('{X509_PREFIX}'))"
    )
}

/// The AuthorizationConfiguration, YAML. Decisions are not cached: certop
/// never allows, so a cached "no opinion" would only delay a revocation
/// (by kube-apiserver's default 30 s); each review costs one hash lookup.
pub fn authorization_config(kubeconfig: &Path, policy: FailurePolicy) -> Result<String, CliError> {
    let config = json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthorizationConfiguration",
        "authorizers": [
            {
                "type": "Webhook",
                "name": "certop.dev",
                "webhook": {
                    "timeout": "3s",
                    "authorizedTTL": "1s",
                    "unauthorizedTTL": "1s",
                    "cacheAuthorizedRequests": false,
                    "cacheUnauthorizedRequests": false,
                    "subjectAccessReviewVersion": "v1",
                    "matchConditionSubjectAccessReviewVersion": "v1",
                    "failurePolicy": policy.as_str(),
                    "connectionInfo": {
                        "type": "KubeConfigFile",
                        "kubeConfigFile": kubeconfig.to_string_lossy(),
                    },
                    "matchConditions": [{ "expression": match_condition() }],
                },
            },
            { "type": "Node", "name": "node" },
            { "type": "RBAC", "name": "rbac" },
        ],
    });
    serde_saphyr::to_string(&config).map_err(|e| CliError::Yaml(e.to_string()))
}

/// The webhook kubeconfig: the server and the CA bundle that signs it.
pub fn webhook_kubeconfig(server: &str, ca_bundle_pem: &str) -> Result<String, CliError> {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(ca_bundle_pem);
    let kubeconfig = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "certop".into(),
            cluster: Some(Cluster {
                server: Some(server.to_string()),
                certificate_authority_data: Some(data),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "certop".into(),
            context: Some(Context {
                cluster: "certop".into(),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("certop".into()),
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        ..Default::default()
    };
    serde_saphyr::to_string(&kubeconfig).map_err(|e| CliError::Yaml(e.to_string()))
}

/// Every certificate of the CA's keys that can sign the webhook's serving
/// certificate now or after the next step of a rotation: the signing key
/// and a staged one (so the file stays good across the switch).
async fn ca_bundle(args: &AuthzConfigArgs) -> Result<String, CliError> {
    let cluster = ClusterConnection::connect().await?;
    let ca = Api::<CertificateAuthority>::all(cluster.client.clone())
        .get(&args.ca)
        .await
        .map_err(cluster.error(format!("CertificateAuthority {}", args.ca)))?;
    let settings = ca
        .settings()
        .map_err(|e| CliError::Invalid(format!("CertificateAuthority {}: {e}", args.ca)))?;
    let record = ca
        .status
        .as_ref()
        .and_then(|s| s.rotation.as_ref())
        .and_then(|r| r.record.as_ref());
    let marks = stored_marks(ca.annotations(), record)
        .marks
        .map_err(|e| CliError::Invalid(format!("CertificateAuthority {}: {e}", args.ca)))?;
    let secrets = Api::<Secret>::namespaced(cluster.client.clone(), &args.namespace);
    let mut bundle = String::new();
    for index in std::iter::once(marks.signing).chain(marks.next_index()) {
        let name = key_secret_name(&settings.secret_name, index);
        let secret = secrets
            .get(&name)
            .await
            .map_err(cluster.error(format!("Secret {}/{name}", args.namespace)))?;
        let (cert, _) = ca_key_pair(&secret).ok_or_else(|| {
            CliError::Invalid(format!(
                "Secret {}/{name} holds no CA certificate: is CertificateAuthority {} Ready?",
                args.namespace, args.ca
            ))
        })?;
        bundle.push_str(&String::from_utf8_lossy(cert));
    }
    Ok(bundle)
}

/// Refuses a webhook URL kube-apiserver would not dial; `flag` names
/// where it came from.
pub fn check_server(flag: &str, server: &str) -> Result<(), CliError> {
    if server.starts_with("https://") {
        return Ok(());
    }
    Err(CliError::Invalid(format!(
        "{flag} {server} must be an https:// URL: kube-apiserver sends reviews over TLS only"
    )))
}

/// The two files for directory `dir` (made absolute, as kube-apiserver
/// reads the kubeconfig's path from the configuration whatever its working
/// directory): the webhook kubeconfig, then the AuthorizationConfiguration
/// that names it. `certop authz-config` and `certop pki init` write these,
/// once `check_server` accepted the URL.
pub fn files(
    dir: &Path,
    server: &str,
    ca_bundle_pem: &str,
    policy: FailurePolicy,
) -> Result<[OutputFile; 2], CliError> {
    let dir = std::path::absolute(dir).map_err(CliError::io(dir))?;
    let kubeconfig = dir.join(KUBECONFIG_FILE);
    let config = authorization_config(&kubeconfig, policy)?;
    Ok([
        OutputFile {
            content: webhook_kubeconfig(server, ca_bundle_pem)?.into_bytes(),
            path: kubeconfig,
            secret: false,
        },
        OutputFile {
            path: dir.join(CONFIG_FILE),
            content: config.into_bytes(),
            secret: false,
        },
    ])
}

pub async fn authz_config(args: AuthzConfigArgs) -> Result<(), CliError> {
    check_server("--server", &args.server)?;
    let bundle = ca_bundle(&args).await?;
    std::fs::create_dir_all(&args.out).map_err(CliError::io(&args.out))?;
    let dir = std::fs::canonicalize(&args.out).map_err(CliError::io(&args.out))?;
    let written = files(&dir, &args.server, &bundle, args.failure_policy)?;
    write_all(&written)?;
    let [kubeconfig, config] = written.map(|f| f.path);
    println!(
        "wrote {} and {}\nkube-apiserver: --authorization-config={} (instead of --authorization-mode)",
        config.display(),
        kubeconfig.display(),
        config.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_asks_certop_first_only_for_certificates_and_never_caches() {
        let yaml = authorization_config(
            Path::new("/etc/kubernetes/w.kubeconfig"),
            FailurePolicy::Deny,
        )
        .expect("yaml");
        let value: serde_json::Value = serde_saphyr::from_str(&yaml).expect("parse");
        let authorizers = value["authorizers"].as_array().expect("authorizers");
        let types: Vec<_> = authorizers.iter().map(|a| a["type"].as_str()).collect();
        assert_eq!(types, [Some("Webhook"), Some("Node"), Some("RBAC")]);
        let webhook = &authorizers[0]["webhook"];
        assert_eq!(webhook["failurePolicy"], "Deny");
        assert_eq!(webhook["cacheUnauthorizedRequests"], false);
        assert_eq!(
            webhook["connectionInfo"]["kubeConfigFile"],
            "/etc/kubernetes/w.kubeconfig"
        );
        let condition = webhook["matchConditions"][0]["expression"]
            .as_str()
            .expect("cel");
        assert!(condition.contains("authentication.kubernetes.io/credential-id"));
        assert!(condition.contains("X509SHA256="));
    }

    #[test]
    fn the_webhook_kubeconfig_trusts_the_bundle_it_is_given() {
        let yaml = webhook_kubeconfig("https://127.0.0.1:8443", "PEM").expect("yaml");
        let parsed: Kubeconfig = serde_saphyr::from_str(&yaml).expect("parse");
        let cluster = parsed.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:8443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("UEVN"));
        assert_eq!(parsed.current_context.as_deref(), Some("certop"));
    }

    #[test]
    fn a_server_or_path_with_yaml_syntax_stays_one_value() {
        let server = "https://h:1\nusers: [{name: x}]\n# \"'&a *a !!binary";
        let parsed: serde_json::Value =
            serde_saphyr::from_str(&webhook_kubeconfig(server, "PEM").expect("yaml"))
                .expect("parse");
        assert_eq!(parsed["clusters"][0]["cluster"]["server"], server);
        assert_eq!(parsed["users"], serde_json::json!([]), "no user injected");
        let path = "/etc/k8s/a: b\n  failurePolicy: NoOpinion #";
        let config: serde_json::Value = serde_saphyr::from_str(
            &authorization_config(Path::new(path), FailurePolicy::Deny).expect("yaml"),
        )
        .expect("parse");
        let webhook = &config["authorizers"][0]["webhook"];
        assert_eq!(webhook["connectionInfo"]["kubeConfigFile"], path);
        assert_eq!(webhook["failurePolicy"], "Deny");
    }
}
