//! The CertificateRevocation controller: revokes what a revocation matches
//! in the CA's ledger, re-signs the CA's CRL, and has each affected
//! ClusterCertificate replaced with a new key.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::conditions::{self, READY};
use super::{Context, Error, crl, ledger_store};
use crate::api::{
    CertificateRevocation, CertificateRevocationStatus, ClusterCertificate, RevocationRecord, meta,
};
use crate::ledger::{LedgerEntry, RevocationRule};
use crate::pki::RevocationReason;

const WAITING_RETRY: Duration = Duration::from_secs(30);

/// The rule a CertificateRevocation stands for. Pure.
pub fn rule_of(rev: &CertificateRevocation) -> RevocationRule {
    let issued_before = rev
        .spec
        .issued_before
        .or_else(|| {
            rev.metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0))
        })
        .unwrap_or_else(Utc::now);
    RevocationRule {
        organizations: rev.spec.organizations.clone(),
        dns_names: rev.spec.dns_names.clone(),
        ip_addresses: rev
            .spec
            .ip_addresses
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .collect(),
        issued_before,
        ..Default::default()
    }
    .with_serials(&rev.spec.serial_numbers)
}

pub async fn reconcile(
    rev: Arc<CertificateRevocation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = apply(&rev, &ctx).await;
    ctx.metrics
        .reconciled("certificaterevocation", started.elapsed().as_secs_f64());
    result
}

pub fn error_policy(rev: Arc<CertificateRevocation>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(revocation = %rev.name_any(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

async fn apply(rev: &CertificateRevocation, ctx: &Context) -> Result<Action, Error> {
    let name = rev.name_any();
    let now = Utc::now();
    let previous = rev.status.clone().unwrap_or_default();
    let done = conditions::is_true(&previous.conditions, READY)
        && previous.observed_generation == rev.metadata.generation;
    if done {
        return Ok(Action::await_change());
    }
    let ca_name = &rev.spec.issuer_ref.name;
    let Some(ca) = ctx.cas.get(&ObjectRef::new(ca_name)) else {
        return not_ready(
            rev,
            ctx,
            "IssuerNotFound",
            format!("CertificateAuthority {ca_name} does not exist; fix spec.issuerRef.name"),
        )
        .await;
    };
    let authority = match super::cluster_certificate::load_authority(ctx, &ca, now).await? {
        Ok(a) => a,
        Err(message) => return not_ready(rev, ctx, "IssuerNotReady", message).await,
    };
    let reason = rev.spec.reason.unwrap_or_default();
    let rule = rule_of(rev);
    let revoked = ledger_store::revoke(
        ctx,
        ca_name,
        &rule,
        reason,
        now,
        authority.certificate().not_after,
    )
    .await?;
    info!(revocation = %name, ca = %ca_name, count = revoked.len(), "revoked");
    ctx.metrics.revoked(reason.as_str(), revoked.len() as u64);

    let crl_note = if authority.certificate().can_sign_crls {
        let lock = ctx.crl_lock(ca_name);
        let _guard = lock.lock().await;
        let published = crl::publish(ctx, &ca, &authority, now).await?;
        format!(
            "; CRL number {} lists {} certificates",
            published.number, published.entries
        )
    } else {
        "; the CA may not sign CRLs (no cRLSign), so the replacements are the only remedy"
            .to_string()
    };
    for entry in &revoked {
        replace_if_current(ctx, entry, reason, &name, now).await?;
    }

    let mut status = previous.clone();
    status.observed_generation = rev.metadata.generation;
    let total = status.revoked_certificates.unwrap_or(0) + revoked.len() as i64;
    status.revoked_certificates = Some(total);
    if !revoked.is_empty() {
        status.last_revocation_time = Some(now);
    }
    let message = format!(
        "revoked {total} certificates issued by {ca_name} before {}{crl_note}",
        rule.issued_before.to_rfc3339()
    );
    conditions::set(
        &mut status.conditions,
        READY,
        true,
        "Revoked",
        &message,
        rev.metadata.generation,
        now,
    );
    ctx.apply_status::<CertificateRevocation>(&name, &status)
        .await?;
    ctx.event(rev, false, "Revoked", "Revoke", message).await;
    Ok(Action::await_change())
}

/// If the revoked certificate is a ClusterCertificate's current one, marks
/// the ClusterCertificate so its controller replaces it with a new key.
async fn replace_if_current(
    ctx: &Context,
    entry: &LedgerEntry,
    reason: RevocationReason,
    revocation: &str,
    now: chrono::DateTime<Utc>,
) -> Result<(), Error> {
    let Some(cert_name) = &entry.certificate else {
        return Ok(());
    };
    let Some(cert) = ctx.certificates.get(&ObjectRef::new(cert_name)) else {
        return Ok(());
    };
    let current = cert
        .status
        .as_ref()
        .and_then(|s| s.serial_number.as_deref())
        == Some(entry.serial.as_str());
    let message = format!(
        "serial {} was revoked ({}) by CertificateRevocation {revocation}",
        entry.serial,
        reason.as_str()
    );
    if !current {
        ctx.event(
            cert.as_ref(),
            false,
            "Revoked",
            "Revoke",
            format!("{message}; it was already superseded"),
        )
        .await;
        return Ok(());
    }
    let record = RevocationRecord {
        serial_number: entry.serial.clone(),
        reason,
        revoked_at: now,
        revocation: Some(revocation.to_string()),
    };
    let patch = serde_json::json!({
        "metadata": {"annotations": BTreeMap::from([(meta::REVOCATION, serde_json::to_string(&record)?)])}
    });
    let api: Api<ClusterCertificate> = Api::all(ctx.client.clone());
    api.patch(cert_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.event(
        cert.as_ref(),
        true,
        "Revoked",
        "Revoke",
        format!("{message}; replacing it with a new key"),
    )
    .await;
    Ok(())
}

async fn not_ready(
    rev: &CertificateRevocation,
    ctx: &Context,
    reason: &str,
    message: String,
) -> Result<Action, Error> {
    let previous = rev.status.clone().unwrap_or_default();
    let mut status: CertificateRevocationStatus = previous.clone();
    status.observed_generation = rev.metadata.generation;
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        reason,
        &message,
        rev.metadata.generation,
        Utc::now(),
    );
    if status != previous {
        ctx.apply_status::<CertificateRevocation>(&rev.name_any(), &status)
            .await?;
        ctx.event(rev, true, reason, reason, message).await;
    }
    Ok(Action::requeue(WAITING_RETRY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CertificateRevocationSpec, IssuerRef};

    #[test]
    fn a_rule_defaults_to_what_existed_when_it_was_created() {
        let mut rev = CertificateRevocation::new(
            "r",
            CertificateRevocationSpec {
                issuer_ref: IssuerRef { name: "ca".into() },
                serial_numbers: vec!["00AB".into()],
                dns_names: vec![".corp.example".into()],
                ip_addresses: vec!["10.0.0.1".into(), "bogus".into()],
                ..Default::default()
            },
        );
        let created = chrono::DateTime::parse_from_rfc3339("2026-05-01T00:00:00Z")
            .expect("time")
            .to_utc();
        rev.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                super::conditions::to_timestamp(created),
            ));
        let rule = rule_of(&rev);
        assert_eq!(rule.issued_before, created);
        assert!(rule.serials.contains("ab"));
        assert_eq!(rule.ip_addresses.len(), 1);
        let explicit = chrono::DateTime::parse_from_rfc3339("2026-04-01T00:00:00Z")
            .expect("time")
            .to_utc();
        rev.spec.issued_before = Some(explicit);
        assert_eq!(rule_of(&rev).issued_before, explicit);
    }
}
