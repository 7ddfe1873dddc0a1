//! `kubectl certop revoke`: creates the CertificateRevocation for a
//! ClusterCertificate's current serial, for any serial of a CA, or for a
//! certificate file (PEM or a kubeconfig) certop may never have seen.

use chrono::Utc;
use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::config::Kubeconfig;
use kube::{Api, ResourceExt};

use super::CliError;
use crate::api::{CertificateRevocation, CertificateRevocationSpec, ClusterCertificate, IssuerRef};
use crate::pki::{CertificateInfo, RevocationReason, SerialNumber, parse_pem_certificate};

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The ClusterCertificate whose current certificate to revoke.
    #[arg(required_unless_present_any = ["serial", "cert"], conflicts_with_all = ["serial", "cert"])]
    pub name: Option<String>,
    /// A serial number (hex) to revoke instead; needs --ca.
    #[arg(long, requires = "ca", conflicts_with = "cert")]
    pub serial: Option<String>,
    /// A certificate to revoke, e.g. issued by `certop pki` or kubeadm: a
    /// PEM file, or a kubeconfig (its current user's client certificate).
    /// Needs --ca. certop checks that the CA signed it and records it in the
    /// CA's ledger: its CRL lists it and kube-apiserver refuses it (through
    /// certop's authorization webhook) until it expires.
    #[arg(long, requires = "ca")]
    pub cert: Option<std::path::PathBuf>,
    /// The CertificateAuthority that issued --serial or --cert.
    #[arg(long)]
    pub ca: Option<String>,
    /// RFC 5280 reason: unspecified, keyCompromise, caCompromise,
    /// affiliationChanged, superseded, cessationOfOperation, certificateHold.
    #[arg(long, default_value = "unspecified")]
    pub reason: RevocationReason,
}

pub async fn revoke(args: RevokeArgs) -> Result<(), CliError> {
    let cluster = super::cluster::Cluster::connect().await?;
    let client = cluster.client.clone();
    let Target {
        issuer,
        serial,
        label,
        digests,
        certificates,
    } = target(&args, &cluster).await?;
    let object_name = format!(
        "{}-{}",
        truncate(&label, 200),
        &serial[..serial.len().min(16)]
    );
    let mut revocation = CertificateRevocation::new(
        &object_name,
        CertificateRevocationSpec {
            issuer_ref: IssuerRef {
                name: issuer.clone(),
            },
            reason: Some(args.reason),
            serial_numbers: vec![serial.clone()],
            certificate_sha256s: digests,
            certificates,
            issued_before: Some(Utc::now() + chrono::Duration::seconds(1)),
            ..Default::default()
        },
    );
    revocation.metadata.labels = Some(
        [(
            "certop.dev/revoked-for".to_string(),
            truncate(&label, 63).to_string(),
        )]
        .into(),
    );
    let api: Api<CertificateRevocation> = Api::all(client);
    let created = api
        .create(&PostParams::default(), &revocation)
        .await
        .map_err(cluster.error(format!("CertificateRevocation for {label}")))?;
    println!(
        "certificaterevocation/{} created: serial {serial} of CertificateAuthority {issuer}, reason {}",
        created.name_any(),
        args.reason.as_str()
    );
    Ok(())
}

/// What a revocation names: the CA, the serial, a label for its object
/// name, the digests kube-apiserver is to refuse, and the certificate
/// itself when certop may not have issued it (for its ledger to record).
struct Target {
    issuer: String,
    serial: String,
    label: String,
    digests: Vec<String>,
    certificates: Vec<String>,
}

/// The target of `revoke`'s arguments: a ClusterCertificate's current
/// certificate, a serial of a CA, or a certificate file.
async fn target(args: &RevokeArgs, cluster: &super::cluster::Cluster) -> Result<Target, CliError> {
    let client = cluster.client.clone();
    let mut digests = Vec::new();
    let mut certificates = Vec::new();
    let (issuer, serial, label) = match (&args.name, &args.serial, &args.cert, &args.ca) {
        (None, None, Some(path), Some(ca)) => {
            let cert = certificate_of_file(path)?;
            digests.push(cert.sha256_hex());
            certificates.push(cert.to_pem());
            (ca.clone(), cert.serial.to_string(), ca.clone())
        }
        (Some(name), _, _, _) => {
            let cert = Api::<ClusterCertificate>::all(client.clone())
                .get(name)
                .await
                .map_err(cluster.error(format!("ClusterCertificate {name}")))?;
            let serial = cert
                .status
                .as_ref()
                .and_then(|s| s.serial_number.clone())
                .ok_or_else(|| {
                    CliError::Invalid(format!(
                        "ClusterCertificate {name} has no certificate yet; nothing to revoke"
                    ))
                })?;
            match current_digest(&client, &cert, &serial).await {
                Ok(Some(digest)) => digests.push(digest),
                Ok(None) => {}
                Err(reason) => eprintln!(
                    "note: {reason}; kube-apiserver refuses serial {serial} only if certop recorded its SHA-256 when it issued it"
                ),
            }
            (cert.spec.issuer_ref.name.clone(), serial, name.clone())
        }
        (None, Some(serial), _, Some(ca)) => {
            let normalized = SerialNumber::from_hex(serial).ok_or_else(|| {
                CliError::Invalid(format!("--serial {serial:?} is not a hex serial number"))
            })?;
            (ca.clone(), normalized.to_string(), ca.clone())
        }
        _ => {
            return Err(CliError::Invalid(
                "name a ClusterCertificate, or give --serial or --cert with --ca".into(),
            ));
        }
    };
    Ok(Target {
        issuer,
        serial,
        label,
        digests,
        certificates,
    })
}

/// Why the digest of a ClusterCertificate's current certificate is unknown.
#[derive(Debug, thiserror::Error)]
enum DigestUnknown {
    #[error("cannot read Secret {namespace}/{name}: {source}")]
    Unreadable {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(transparent)]
    NotACertificate(#[from] crate::pki::PkiError),
}

/// The SHA-256 of the certificate a ClusterCertificate's Secret holds,
/// when it is the serial being revoked. The ledger entry carries the same
/// digest, except when certop issued the certificate before it recorded
/// digests: then this is what makes kube-apiserver refuse it.
async fn current_digest(
    client: &kube::Client,
    cert: &ClusterCertificate,
    serial: &str,
) -> Result<Option<String>, DigestUnknown> {
    let (ns, name) = (&cert.spec.secret_namespace, &cert.spec.secret_name);
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|source| DigestUnknown::Unreadable {
            namespace: ns.clone(),
            name: name.clone(),
            source,
        })?;
    let Some(pem) = secret
        .as_ref()
        .and_then(|s| s.data.as_ref()?.get("tls.crt"))
    else {
        return Ok(None);
    };
    let held = parse_pem_certificate(&pem.0, &format!("Secret {ns}/{name}"))?;
    let same = SerialNumber::from_hex(serial).is_some_and(|s| s == held.serial);
    Ok(same.then(|| held.sha256_hex()))
}

/// The certificate a file holds: the first of a PEM file, or the client
/// certificate of a kubeconfig's current user (inline or by path).
fn certificate_of_file(path: &std::path::Path) -> Result<CertificateInfo, CliError> {
    let text = std::fs::read(path).map_err(CliError::io(path))?;
    let what = path.display().to_string();
    if text.starts_with(b"-----BEGIN") {
        return Ok(parse_pem_certificate(&text, &what)?);
    }
    let config = Kubeconfig::read_from(path)
        .map_err(|e| CliError::Invalid(format!("{what}: neither PEM nor a kubeconfig: {e}")))?;
    let user_name = config
        .current_context
        .as_ref()
        .and_then(|c| config.contexts.iter().find(|n| &n.name == c))
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone());
    let user = config
        .auth_infos
        .iter()
        .find(|a| Some(&a.name) == user_name.as_ref())
        .or(config.auth_infos.first())
        .and_then(|a| a.auth_info.as_ref())
        .ok_or_else(|| CliError::Invalid(format!("{what}: the kubeconfig has no user")))?;
    let pem = match (&user.client_certificate_data, &user.client_certificate) {
        (Some(data), _) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| CliError::Invalid(format!("{what}: client-certificate-data: {e}")))?
        }
        (None, Some(file)) => {
            let file = path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(file);
            std::fs::read(&file).map_err(CliError::io(&file))?
        }
        (None, None) => {
            return Err(CliError::Invalid(format!(
                "{what}: the kubeconfig's user has no client certificate (a token cannot be revoked by certop)"
            )));
        }
    };
    Ok(parse_pem_certificate(&pem, &what)?)
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].trim_end_matches(['-', '.'])
}
