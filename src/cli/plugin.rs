//! The `kubectl certop` plugin (the same binary installed as
//! `kubectl-certop`): status, renew, check-expiration.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::{CliError, format_time_left};
use crate::api::{CertificateAuthority, ClusterCertificate, meta};
use crate::pki::parse_chain;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The ClusterCertificate.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// ClusterCertificates to re-issue now.
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
    /// Re-issue every ClusterCertificate.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct CheckExpirationArgs {}

async fn client() -> Result<Client, CliError> {
    Client::try_default().await.map_err(CliError::Kube)
}

pub fn block_on<F: Future<Output = Result<(), CliError>>>(f: F) -> Result<(), CliError> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?
        .block_on(f)
}

fn condition_line(c: &ClusterCertificate, type_: &str) -> String {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|x| x.type_ == type_))
        .map_or("Unknown".to_string(), |x| {
            format!("{} ({}): {}", x.status, x.reason, x.message)
        })
}

fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) if t > now => format!("{} (in {})", t.to_rfc3339(), format_time_left(t - now)),
        Some(t) => format!("{} ({} ago)", t.to_rfc3339(), format_time_left(now - t)),
        None => "-".to_string(),
    }
}

/// Like `cmctl status certificate`: conditions, names, validity, renewal
/// and the recent Events, in one screen.
pub async fn status(args: StatusArgs) -> Result<(), CliError> {
    let client = client().await?;
    let certs: Api<ClusterCertificate> = Api::all(client.clone());
    let c = certs.get(&args.name).await.map_err(CliError::Kube)?;
    let now = Utc::now();
    let s = c.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "Name:          {}", c.name_any());
    let _ = writeln!(out, "Ready:         {}", condition_line(&c, "Ready"));
    let _ = writeln!(out, "Issuing:       {}", condition_line(&c, "Issuing"));
    let _ = writeln!(out, "Issuer:        {}", c.spec.issuer_ref.name);
    let _ = writeln!(
        out,
        "Secret:        {}/{}",
        c.spec.secret_namespace, c.spec.secret_name
    );
    let _ = writeln!(out, "Not before:    {}", when(s.not_before, now));
    let _ = writeln!(out, "Not after:     {}", when(s.not_after, now));
    let _ = writeln!(out, "Renewal:       {}", when(s.renewal_time, now));
    let _ = writeln!(
        out,
        "Serial:        {}",
        s.serial_number.clone().unwrap_or("-".into())
    );
    let _ = writeln!(
        out,
        "Fingerprint:   {}",
        s.fingerprint.clone().unwrap_or("-".into())
    );
    let _ = writeln!(
        out,
        "Revision:      {}",
        s.revision.map_or("-".into(), |r| r.to_string())
    );
    if let Some(n) = s.failed_issuance_attempts {
        let _ = writeln!(
            out,
            "Failures:      {n} (last {})",
            when(s.last_failure_time, now)
        );
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &c.spec.secret_namespace);
    match secrets
        .get_opt(&c.spec.secret_name)
        .await
        .map_err(CliError::Kube)?
    {
        None => {
            let _ = writeln!(out, "Certificate:   the Secret does not exist");
        }
        Some(secret) => {
            let chain = secret
                .data
                .as_ref()
                .and_then(|d| d.get("tls.crt"))
                .map(|v| v.0.clone())
                .unwrap_or_default();
            match parse_chain(&chain, "tls.crt") {
                Ok(chain) => {
                    let leaf = &chain[0];
                    let _ = writeln!(
                        out,
                        "Certificate:   {} issued by {}",
                        leaf.subject(),
                        leaf.issuer()
                    );
                    let names: Vec<String> = leaf
                        .dns_names
                        .iter()
                        .cloned()
                        .chain(leaf.ip_addresses.iter().map(|ip| ip.to_string()))
                        .chain(leaf.uris.iter().cloned())
                        .collect();
                    let _ = writeln!(
                        out,
                        "Names:         {}",
                        if names.is_empty() {
                            "-".into()
                        } else {
                            names.join(", ")
                        }
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "Certificate:   {e}");
                }
            }
        }
    }
    let events: Api<Event> = Api::namespaced(client, "default");
    let selector = format!(
        "regarding.name={},regarding.kind=ClusterCertificate",
        c.name_any()
    );
    let mut list = events
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(CliError::Kube)?
        .items;
    list.sort_by_key(|e| {
        e.event_time
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or_default()
    });
    let _ = writeln!(out, "Events:");
    for e in list.iter().rev().take(10).rev() {
        let _ = writeln!(
            out,
            "  {:<8} {:<16} {}",
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            e.note.clone().unwrap_or_default()
        );
    }
    print!("{out}");
    Ok(())
}

/// Asks the operator to re-issue now: an annotation with the time of the
/// request, honoured once (the new certificate is newer than it).
pub async fn renew(args: RenewArgs) -> Result<(), CliError> {
    let certs: Api<ClusterCertificate> = Api::all(client().await?);
    let names = if args.all {
        certs
            .list(&ListParams::default())
            .await
            .map_err(CliError::Kube)?
            .items
            .iter()
            .map(|c| c.name_any())
            .collect()
    } else {
        args.names
    };
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let patch = serde_json::json!({"metadata": {"annotations": {meta::RENEW_REQUESTED_AT: now}}});
    for name in names {
        certs
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(CliError::Kube)?;
        println!("renewal of {name} requested");
    }
    Ok(())
}

/// kubeadm's `certs check-expiration` tables, for the cluster's
/// ClusterCertificates and CertificateAuthorities.
pub async fn check_expiration(_args: CheckExpirationArgs) -> Result<(), CliError> {
    let client = client().await?;
    let certs = Api::<ClusterCertificate>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(CliError::Kube)?;
    let cas = Api::<CertificateAuthority>::all(client)
        .list(&ListParams::default())
        .await
        .map_err(CliError::Kube)?;
    print!(
        "{}",
        expiration_tables(&certs.items, &cas.items, Utc::now())
    );
    Ok(())
}

pub fn expiration_tables(
    certs: &[ClusterCertificate],
    cas: &[CertificateAuthority],
    now: DateTime<Utc>,
) -> String {
    let ready = |conds: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>| {
        conds
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map_or("Unknown".to_string(), |c| c.status.clone())
    };
    let expiry = |t: Option<DateTime<Utc>>| {
        t.map_or("-".into(), |t| t.format("%b %d, %Y %H:%M UTC").to_string())
    };
    let residual = |t: Option<DateTime<Utc>>| t.map_or("-".into(), |t| format_time_left(t - now));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:<25} {:<15} {:<24} READY",
        "CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY"
    );
    let mut certs: Vec<&ClusterCertificate> = certs.iter().collect();
    certs.sort_by_key(|c| c.name_any());
    for c in certs {
        let s = c.status.as_ref();
        let not_after = s.and_then(|s| s.not_after);
        let _ = writeln!(
            out,
            "{:<32} {:<25} {:<15} {:<24} {}",
            c.name_any(),
            expiry(not_after),
            residual(not_after),
            c.spec.issuer_ref.name,
            ready(s.map(|s| &s.conditions))
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<32} {:<25} {:<15} READY",
        "CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME"
    );
    let mut cas: Vec<&CertificateAuthority> = cas.iter().collect();
    cas.sort_by_key(|c| c.name_any());
    for ca in cas {
        let s = ca.status.as_ref();
        let not_after = s.and_then(|s| s.not_after);
        let _ = writeln!(
            out,
            "{:<32} {:<25} {:<15} {}",
            ca.name_any(),
            expiry(not_after),
            residual(not_after),
            ready(s.map(|s| &s.conditions))
        );
    }
    out
}
