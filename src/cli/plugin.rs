//! The `kubectl certop` plugin (the same binary installed as
//! `kubectl-certop`): status, renew, rotate-ca, check-expiration.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::cluster::Cluster;
use super::{CliError, format_time_left};
use crate::api::{CertificateAuthority, CertificateRevocation, ClusterCertificate, meta};
use crate::operator::certificate_revocation::API_SERVER_ENFORCEABLE;
use crate::operator::reason::Reason;
use crate::pki::parse_chain;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A ClusterCertificate, `ca/NAME` (`certificateauthority/NAME`) for a
    /// CertificateAuthority, or `revocation/NAME` (`crev/NAME`,
    /// `certificaterevocation/NAME`) for a CertificateRevocation.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// ClusterCertificates to re-issue now.
    #[arg(required_unless_present_any = ["all", "selector"])]
    pub names: Vec<String>,
    /// Re-issue every ClusterCertificate.
    #[arg(long, conflicts_with_all = ["names", "selector"])]
    pub all: bool,
    /// Re-issue the ClusterCertificates with these labels (`-l team=web`).
    #[arg(short = 'l', long = "selector", conflicts_with = "names")]
    pub selector: Option<String>,
}

#[derive(Debug, Args)]
pub struct RotateCaArgs {
    /// The CertificateAuthority to rotate.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// What to inspect: `secret`.
    pub kind: InspectKind,
    /// NAMESPACE/NAME of a Secret holding a certificate (tls.crt).
    pub target: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectKind {
    Secret,
}

#[derive(Debug, Args)]
pub struct CheckExpirationArgs {}

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

/// A certificate's DNS names, IPs and URIs on one line (`-` for none).
fn names_of(c: &crate::pki::CertificateInfo) -> String {
    let names: Vec<String> = c
        .dns_names
        .iter()
        .cloned()
        .chain(c.ip_addresses.iter().map(|ip| ip.to_string()))
        .chain(c.uris.iter().cloned())
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(", ")
    }
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
    let cluster = Cluster::connect().await?;
    if let Some(ca) = args
        .name
        .strip_prefix("ca/")
        .or_else(|| args.name.strip_prefix("certificateauthority/"))
    {
        return status_of_ca(&cluster, ca).await;
    }
    if let Some(rev) = ["revocation/", "crev/", "certificaterevocation/"]
        .iter()
        .find_map(|p| args.name.strip_prefix(p))
    {
        return status_of_revocation(&cluster, rev).await;
    }
    let name = args
        .name
        .strip_prefix("clustercertificate/")
        .unwrap_or(&args.name);
    let certs: Api<ClusterCertificate> = Api::all(cluster.client.clone());
    let c = certs
        .get(name)
        .await
        .map_err(cluster.error(format!("ClusterCertificate {name}")))?;
    let mut out = certificate_lines(&c, Utc::now());
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &c.spec.secret_namespace);
    let secret = secrets
        .get_opt(&c.spec.secret_name)
        .await
        .map_err(cluster.error(format!(
            "Secret {}/{}",
            c.spec.secret_namespace, c.spec.secret_name
        )))?;
    out.push_str(&secret_lines(secret.as_ref()));
    out.push_str(&recent_events(&cluster, "ClusterCertificate", &c.name_any()).await?);
    print!("{out}");
    Ok(())
}

/// A ClusterCertificate's conditions and status, one field a line.
fn certificate_lines(c: &ClusterCertificate, now: DateTime<Utc>) -> String {
    let s = c.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "Name:          {}", c.name_any());
    let _ = writeln!(out, "Ready:         {}", condition_line(c, "Ready"));
    let _ = writeln!(out, "Issuing:       {}", condition_line(c, "Issuing"));
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
    out
}

/// What the certificate's Secret holds: its leaf's subject, issuer and
/// names, or why there is none to show.
fn secret_lines(secret: Option<&Secret>) -> String {
    let mut out = String::new();
    let Some(secret) = secret else {
        let _ = writeln!(out, "Certificate:   the Secret does not exist");
        return out;
    };
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
            let _ = writeln!(out, "Names:         {}", names_of(leaf));
        }
        Err(e) => {
            let _ = writeln!(out, "Certificate:   {e}");
        }
    }
    out
}

/// The last Events of a cluster-scoped object (they are in `default`).
async fn recent_events(cluster: &Cluster, kind: &str, name: &str) -> Result<String, CliError> {
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let selector = format!("regarding.name={name},regarding.kind={kind}");
    let mut list = events
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(cluster.error("Events in namespace default"))?
        .items;
    list.sort_by_key(|e| {
        e.event_time
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or_default()
    });
    let mut out = String::from("Events:\n");
    for e in list.iter().rev().take(10).rev() {
        let _ = writeln!(
            out,
            "  {:<8} {:<16} {}",
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            e.note.clone().unwrap_or_default()
        );
    }
    Ok(out)
}

/// A CertificateAuthority: conditions, its certificate, CRL and counts.
async fn status_of_ca(cluster: &Cluster, name: &str) -> Result<(), CliError> {
    let ca = Api::<CertificateAuthority>::all(cluster.client.clone())
        .get(name)
        .await
        .map_err(cluster.error(format!("CertificateAuthority {name}")))?;
    let now = Utc::now();
    let s = ca.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "Name:          {}", ca.name_any());
    for c in &s.conditions {
        let _ = writeln!(
            out,
            "{:<14} {} ({}): {}",
            format!("{}:", c.type_),
            c.status,
            c.reason,
            c.message
        );
    }
    let _ = writeln!(out, "Subject:       CN={}", ca.spec.subject.common_name);
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
    let _ = writeln!(out, "Not before:    {}", when(s.not_before, now));
    let _ = writeln!(out, "Not after:     {}", when(s.not_after, now));
    let _ = writeln!(
        out,
        "CRL:           number {}, next update {}",
        s.crl_number.map_or("-".into(), |n| n.to_string()),
        when(s.crl_next_update, now)
    );
    let _ = writeln!(
        out,
        "Certificates:  {} live, {} revoked",
        s.issued_certificates.unwrap_or(0),
        s.revoked_certificates.unwrap_or(0)
    );
    if let Some(n) = s.certificates_without_digest.filter(|n| *n > 0) {
        let _ = writeln!(
            out,
            "               {n} recorded without a SHA-256: kube-apiserver cannot refuse them once revoked (see the user guide, \"Revocation the API server enforces\")"
        );
    }
    if let Some(r) = &s.rotation {
        let mut line = format!("{} (rotation {})", r.phase, r.number);
        if let Some(n) = &r.next_serial_number {
            let _ = write!(line, ", staged serial {n}");
        }
        if let Some(p) = &r.previous_serial_number {
            let _ = write!(
                line,
                ", retiring serial {p} with {} certificates left",
                r.previous_certificates.unwrap_or(0)
            );
        }
        if let Some(at) = r.next_step_at {
            let _ = write!(line, ", next step {}", when(Some(at), now));
        }
        let _ = writeln!(out, "Rotation:      {line}");
    }
    if let Some(p) = &ca.spec.policy {
        let _ = writeln!(
            out,
            "Policy:        profiles {:?}, organizations {:?}, DNS names {:?}, max {}",
            p.allowed_profiles,
            p.allowed_organizations,
            p.allowed_dns_names,
            p.max_duration.as_ref().map_or("-", |d| d.as_str())
        );
    }
    out.push_str(&recent_events(cluster, "CertificateAuthority", name).await?);
    print!("{out}");
    Ok(())
}

/// A CertificateRevocation: its conditions and where it is enforced.
async fn status_of_revocation(cluster: &Cluster, name: &str) -> Result<(), CliError> {
    let rev = Api::<CertificateRevocation>::all(cluster.client.clone())
        .get(name)
        .await
        .map_err(cluster.error(format!("CertificateRevocation {name}")))?;
    let mut out = revocation_lines(&rev, Utc::now());
    out.push_str(&recent_events(cluster, "CertificateRevocation", name).await?);
    print!("{out}");
    Ok(())
}

/// What a revocation did and where it took effect: the CRL that lists its
/// certificates, what kube-apiserver's reviews showed, and, first, when
/// kube-apiserver cannot refuse them at all. Pure.
fn revocation_lines(rev: &CertificateRevocation, now: DateTime<Utc>) -> String {
    let s = rev.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "Name:          {}", rev.name_any());
    let _ = writeln!(out, "Issuer:        {}", rev.spec.issuer_ref.name);
    let _ = writeln!(
        out,
        "Reason:        {}",
        rev.spec.reason.unwrap_or_default().as_str()
    );
    for c in &s.conditions {
        let _ = writeln!(
            out,
            "{}: {} ({}): {}",
            c.type_, c.status, c.reason, c.message
        );
    }
    if let Some(c) = s
        .conditions
        .iter()
        .find(|c| c.type_ == API_SERVER_ENFORCEABLE && c.reason == Reason::SystemMasters.as_str())
    {
        let _ = writeln!(
            out,
            "WARNING:       NOT ENFORCEABLE at kube-apiserver: {}",
            c.message
        );
    }
    let _ = writeln!(
        out,
        "Revoked:       {} certificates (last {})",
        s.revoked_certificates.unwrap_or(0),
        when(s.last_revocation_time, now)
    );
    if s.crl_published.is_empty() {
        let _ = writeln!(out, "CRL:           lists none of them (yet)");
    }
    for p in &s.crl_published {
        let _ = writeln!(
            out,
            "CRL:           key {}: first listed by CRL number {} ({} certificates)",
            p.key, p.crl_number, p.certificates
        );
    }
    let a = s.api_server.clone().unwrap_or_default();
    let asked = match a.last_review_time {
        Some(t) => format!("certop's webhook answered kube-apiserver {}", when(Some(t), now)),
        None => "no review seen yet by a replica that refuses these certificates (is kube-apiserver started with certop authz-config's --authorization-config, and certop with --authz-addr?)".into(),
    };
    let _ = writeln!(out, "API server:    {asked}");
    let refused = match (a.denied_requests, a.first_denied_time, a.last_denied_time) {
        (Some(n), Some(first), Some(last)) => format!(
            "{n} requests made with a revoked certificate, first {}, last {}",
            when(Some(first), now),
            when(Some(last), now)
        ),
        _ => "no request made with a revoked certificate so far".into(),
    };
    let _ = writeln!(out, "Refused:       {refused}");
    out
}

/// What cmctl's `inspect secret` shows: every certificate in the Secret's
/// tls.crt (subject, issuer, validity, names, usages, serial, fingerprint,
/// CRL distribution point) and whether the key matches.
pub async fn inspect(args: InspectArgs) -> Result<(), CliError> {
    let InspectKind::Secret = args.kind;
    let (ns, name) = args.target.split_once('/').ok_or_else(|| {
        CliError::Invalid(format!(
            "{:?}: name the Secret as NAMESPACE/NAME",
            args.target
        ))
    })?;
    let cluster = Cluster::connect().await?;
    let secret = Api::<Secret>::namespaced(cluster.client.clone(), ns)
        .get(name)
        .await
        .map_err(cluster.error(format!("Secret {ns}/{name}")))?;
    let data = secret.data.unwrap_or_default();
    let chain = data
        .get("tls.crt")
        .ok_or_else(|| CliError::Invalid(format!("Secret {ns}/{name} has no tls.crt")))?;
    let certs = parse_chain(&chain.0, "tls.crt")?;
    let now = Utc::now();
    let mut out = String::new();
    for (i, c) in certs.iter().enumerate() {
        let _ = writeln!(out, "Certificate {} of {}:", i + 1, certs.len());
        let _ = writeln!(out, "  Subject:      {}", c.subject());
        let _ = writeln!(out, "  Issuer:       {}", c.issuer());
        let _ = writeln!(out, "  Serial:       {}", c.serial);
        let _ = writeln!(out, "  Fingerprint:  {}", c.fingerprint);
        let _ = writeln!(out, "  Not before:   {}", when(Some(c.not_before), now));
        let _ = writeln!(out, "  Not after:    {}", when(Some(c.not_after), now));
        let _ = writeln!(out, "  Names:        {}", names_of(c));
        let usages: Vec<String> = c
            .usages
            .iter()
            .map(|u| crate::pki::usage_name(*u))
            .collect();
        let _ = writeln!(out, "  Usages:       {}", usages.join(", "));
        let _ = writeln!(out, "  CA:           {}", c.is_ca);
        if !c.crl_distribution_points.is_empty() {
            let _ = writeln!(
                out,
                "  CRL:          {}",
                c.crl_distribution_points.join(", ")
            );
        }
    }
    if let (Some(leaf), Some(key)) = (certs.first(), data.get("tls.key")) {
        let matches = std::str::from_utf8(&key.0)
            .ok()
            .and_then(|k| crate::pki::PrivateKey::from_pem(k, "tls.key").ok())
            .is_some_and(|k| crate::pki::key_matches_certificate(&k, leaf));
        let _ = writeln!(
            out,
            "Private key:    {}",
            if matches {
                "matches the certificate"
            } else {
                "DOES NOT match the certificate"
            }
        );
    }
    print!("{out}");
    Ok(())
}

/// Asks the operator to re-issue now: an annotation with the time of the
/// request, honoured once (the new certificate is newer than it).
pub async fn renew(args: RenewArgs) -> Result<(), CliError> {
    let cluster = Cluster::connect().await?;
    let certs: Api<ClusterCertificate> = Api::all(cluster.client.clone());
    let names: Vec<String> = if args.all || args.selector.is_some() {
        let mut params = ListParams::default();
        if let Some(selector) = &args.selector {
            params = params.labels(selector);
        }
        certs
            .list(&params)
            .await
            .map_err(cluster.error("ClusterCertificates"))?
            .items
            .iter()
            .map(|c| c.name_any())
            .collect()
    } else {
        args.names
    };
    if names.is_empty() {
        println!("no ClusterCertificate matches");
    }
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let patch = serde_json::json!({"metadata": {"annotations": {meta::RENEW_REQUESTED_AT: now}}});
    for name in names {
        certs
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(cluster.error(format!("ClusterCertificate {name}")))?;
        println!("renewal of {name} requested");
    }
    Ok(())
}

/// Asks the operator to rotate a CA now: an annotation whose new value is
/// one request (a value, not a clock: the operator starts one rotation
/// for it, whatever this machine's time). The rotation then runs its
/// course; `kubectl certop status ca/NAME` shows where it stands.
pub async fn rotate_ca(args: RotateCaArgs) -> Result<(), CliError> {
    let cluster = Cluster::connect().await?;
    let cas: Api<CertificateAuthority> = Api::all(cluster.client.clone());
    let name = args
        .name
        .strip_prefix("ca/")
        .unwrap_or(&args.name)
        .to_string();
    let ca = cas
        .get(&name)
        .await
        .map_err(cluster.error(format!("CertificateAuthority {name}")))?;
    if let Some(r) = ca.status.as_ref().and_then(|s| s.rotation.as_ref())
        && r.phase != "Stable"
    {
        return Err(CliError::Invalid(format!(
            "CertificateAuthority {name} is already rotating (phase {}, rotation {}); wait until it is Stable",
            r.phase, r.number
        )));
    }
    let request = format!(
        "{}-{}",
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        crate::pki::SerialNumber::random()
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    let patch =
        serde_json::json!({"metadata": {"annotations": {meta::ROTATE_REQUESTED_AT: request}}});
    cas.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(cluster.error(format!("CertificateAuthority {name}")))?;
    println!("rotation of {name} requested; follow it with `kubectl certop status ca/{name}`");
    Ok(())
}

/// kubeadm's `certs check-expiration` tables, for the cluster's
/// ClusterCertificates and CertificateAuthorities.
pub async fn check_expiration(_args: CheckExpirationArgs) -> Result<(), CliError> {
    let cluster = Cluster::connect().await?;
    let certs = Api::<ClusterCertificate>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(cluster.error("ClusterCertificates"))?;
    let cas = Api::<CertificateAuthority>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(cluster.error("CertificateAuthorities"))?;
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn revocation(status: serde_json::Value) -> CertificateRevocation {
        serde_json::from_value(json!({
            "apiVersion": "certop.dev/v1", "kind": "CertificateRevocation",
            "metadata": {"name": "admin-0a"},
            "spec": {"issuerRef": {"name": "kubernetes"}, "serialNumbers": ["0a"], "reason": "keyCompromise"},
            "status": status,
        }))
        .expect("revocation")
    }

    #[test]
    fn the_revocation_view_says_where_it_took_effect_and_where_it_cannot() {
        let now = DateTime::parse_from_rfc3339("2026-05-01T00:01:00Z")
            .expect("time")
            .to_utc();
        let enforced = revocation(json!({
            "revokedCertificates": 1,
            "conditions": [{"type": "ApiServerEnforceable", "status": "True", "reason": "Enforceable", "message": "refuses", "lastTransitionTime": "2026-05-01T00:00:00Z"}],
            "crlPublished": [{"crlNumber": 7, "certificates": 1}],
            "apiServer": {"lastReviewTime": "2026-05-01T00:00:50Z", "firstDeniedTime": "2026-05-01T00:00:10Z",
                          "lastDeniedTime": "2026-05-01T00:00:40Z", "deniedRequests": 4},
        }));
        let out = revocation_lines(&enforced, now);
        for line in [
            "CRL:           key 0: first listed by CRL number 7 (1 certificates)",
            "API server:    certop's webhook answered kube-apiserver 2026-05-01T00:00:50+00:00 (10s ago)",
            "Refused:       4 requests made with a revoked certificate, first 2026-05-01T00:00:10+00:00",
        ] {
            assert!(out.contains(line), "{line}\n{out}");
        }
        assert!(!out.contains("WARNING"), "{out}");

        let masters = revocation(json!({
            "conditions": [{"type": "ApiServerEnforceable", "status": "False", "reason": "SystemMasters", "message": "serials 0a carry O=system:masters: rotate the CA", "lastTransitionTime": "2026-05-01T00:00:00Z"}],
        }));
        let out = revocation_lines(&masters, now);
        assert!(
            out.contains("WARNING:       NOT ENFORCEABLE at kube-apiserver: serials 0a carry O=system:masters: rotate the CA"),
            "{out}"
        );
        assert!(out.contains("no review seen yet"), "{out}");
        assert!(
            out.contains("no request made with a revoked certificate"),
            "{out}"
        );
        assert!(out.contains("CRL:           lists none of them"), "{out}");
    }
}
