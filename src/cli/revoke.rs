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
use crate::api::{
    CertificateRevocation, CertificateRevocationSpec, ClusterCertificate, IssuerRef, meta,
};
use crate::core::authz::{PRIVILEGED_GROUP, bypasses_authorization};
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
        certificate,
    } = target(&args, &cluster).await?;
    if let Some(warning) = certificate.as_ref().and_then(|c| unenforceable(c, &issuer)) {
        eprintln!("{warning}");
    }
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
            // A file's certificate, for the CA's ledger to record (certop
            // may not have issued it); a ClusterCertificate's is there.
            certificates: match (&args.cert, &certificate) {
                (Some(_), Some(c)) => vec![c.to_pem()],
                _ => Vec::new(),
            },
            issued_before: Some(Utc::now() + chrono::Duration::seconds(1)),
            ..Default::default()
        },
    );
    if args.cert.is_some()
        && let Some(c) = &certificate
    {
        // The controller cannot read a file certop never saw: the subject's
        // groups let the revocation's status say whether kube-apiserver
        // can refuse it.
        revocation.metadata.annotations = Some(
            [(
                meta::SUBJECT_ORGANIZATIONS.to_string(),
                serde_json::to_string(&c.organizations)
                    .map_err(|e| CliError::Invalid(format!("organizations: {e}")))?,
            )]
            .into(),
        );
    }
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
/// name, and the digests kube-apiserver is to refuse; and the certificate
/// itself when the command could read it (a file, or the Secret).
struct Target {
    issuer: String,
    serial: String,
    label: String,
    digests: Vec<String>,
    certificate: Option<CertificateInfo>,
}

/// The warning for a certificate no revocation can make kube-apiserver
/// refuse: one in `system:masters`. Pure.
fn unenforceable(certificate: &CertificateInfo, ca: &str) -> Option<String> {
    bypasses_authorization(&certificate.organizations).then(|| {
        format!(
            "warning: this certificate is in group {PRIVILEGED_GROUP}: kube-apiserver lets that group through before it asks any authorizer, so it keeps working until it expires ({}) even though it is revoked. To end it now, rotate the CA (kubectl certop rotate-ca {ca}) and remove the old CA certificate from kube-apiserver's --client-ca-file once the rotation ends",
            certificate.not_after.to_rfc3339()
        )
    })
}

/// The target of `revoke`'s arguments: a ClusterCertificate's current
/// certificate, a serial of a CA, or a certificate file.
async fn target(args: &RevokeArgs, cluster: &super::cluster::Cluster) -> Result<Target, CliError> {
    let client = cluster.client.clone();
    let mut digests = Vec::new();
    let mut certificate = None;
    let (issuer, serial, label) = match (&args.name, &args.serial, &args.cert, &args.ca) {
        (None, None, Some(path), Some(ca)) => {
            let cert = certificate_of_file(path)?;
            digests.push(cert.sha256_hex());
            let serial = cert.serial.to_string();
            certificate = Some(cert);
            (ca.clone(), serial, ca.clone())
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
            match current_certificate(&client, &cert, &serial).await {
                Ok(Some(held)) => {
                    digests.push(held.sha256_hex());
                    certificate = Some(held);
                }
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
        certificate,
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

/// The certificate a ClusterCertificate's Secret holds, when it is the
/// serial being revoked: its SHA-256 is in the ledger entry too, except
/// when certop issued it before it recorded digests (then this is what
/// makes kube-apiserver refuse it), and its subject says whether
/// kube-apiserver can refuse it at all.
async fn current_certificate(
    client: &kube::Client,
    cert: &ClusterCertificate,
    serial: &str,
) -> Result<Option<CertificateInfo>, DigestUnknown> {
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
    Ok(same.then_some(held))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(organizations: &[&str]) -> CertificateInfo {
        CertificateInfo {
            der: Vec::new(),
            common_name: Some("leaked".into()),
            organizations: organizations.iter().map(|o| o.to_string()).collect(),
            serial: SerialNumber::from_hex("0a").expect("serial"),
            fingerprint: String::new(),
            not_before: chrono::DateTime::UNIX_EPOCH,
            not_after: chrono::DateTime::UNIX_EPOCH,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            is_ca: false,
            can_sign_certificates: false,
            can_sign_crls: false,
            usages: Default::default(),
            key_algorithm: None,
            subject_key_id: None,
            authority_key_id: None,
            crl_distribution_points: Vec::new(),
            subject_der: Vec::new(),
            issuer_der: Vec::new(),
            public_key_bits: Vec::new(),
        }
    }

    #[test]
    fn revoking_a_system_masters_certificate_warns_at_once() {
        // (groups, whether the command warns)
        let rows: [(&[&str], bool); 4] = [
            (&["system:masters"], true),
            (&["kubeadm:cluster-admins", "system:masters"], true),
            (&["kubeadm:cluster-admins"], false),
            (&[], false),
        ];
        for (groups, warns) in rows {
            let warning = unenforceable(&certificate(groups), "kubernetes");
            assert_eq!(warning.is_some(), warns, "{groups:?}");
            if let Some(w) = warning {
                assert!(
                    w.contains("kubectl certop rotate-ca kubernetes")
                        && w.contains("--client-ca-file"),
                    "{w}"
                );
            }
        }
    }
}
