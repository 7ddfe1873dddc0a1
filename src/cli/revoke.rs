//! `kubectl certop revoke`: creates the CertificateRevocation for a
//! ClusterCertificate's current serial, or for any serial of a CA.

use chrono::Utc;
use clap::Args;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::CliError;
use crate::api::{CertificateRevocation, CertificateRevocationSpec, ClusterCertificate, IssuerRef};
use crate::pki::{RevocationReason, SerialNumber};

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The ClusterCertificate whose current certificate to revoke.
    #[arg(required_unless_present = "serial", conflicts_with = "serial")]
    pub name: Option<String>,
    /// A serial number (hex) to revoke instead; needs --ca.
    #[arg(long, requires = "ca")]
    pub serial: Option<String>,
    /// The CertificateAuthority that issued --serial.
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
    let (issuer, serial, label) = match (&args.name, &args.serial, &args.ca) {
        (Some(name), _, _) => {
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
            (cert.spec.issuer_ref.name.clone(), serial, name.clone())
        }
        (None, Some(serial), Some(ca)) => {
            let normalized = SerialNumber::from_hex(serial).ok_or_else(|| {
                CliError::Invalid(format!("--serial {serial:?} is not a hex serial number"))
            })?;
            (ca.clone(), normalized.to_string(), ca.clone())
        }
        _ => {
            return Err(CliError::Invalid(
                "name a ClusterCertificate, or give --serial and --ca".into(),
            ));
        }
    };
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

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].trim_end_matches(['-', '.'])
}
