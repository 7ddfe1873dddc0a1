//! The ClusterCertificate controller: keeps each declared certificate valid
//! and matching its spec in a `kubernetes.io/tls` Secret.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::certificate_authority;
use super::conditions::{self, ISSUING, READY};
use super::finalize::reconcile_with_finalizer;
use super::{Context, Error, crl, ledger_store};
use crate::api::{
    CertificateAuthority, ClusterCertificate, ClusterCertificateStatus, RevocationRecord,
    SecretDeletionPolicy, meta,
};
use crate::ledger::{LedgerEntry, RevocationRule};
use crate::pki::{Authority, LeafTemplate, PrivateKey, RevocationReason, issue};
use crate::plan::{
    CA_CERT_KEY, IssueReason, Plan, RenewalPolicy, SecretData, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY,
    plan,
};

/// Longest wait between two looks at a valid certificate: renewal is
/// requeued at its time, and this bounds the harm of a clock jump.
const MAX_REQUEUE: Duration = Duration::from_secs(8 * 3600);
/// Retry bounds after a failure: seconds, doubling, capped at minutes.
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Retry for conditions that another object's change will end (and whose
/// watch triggers a reconcile sooner).
const WAITING_RETRY: Duration = Duration::from_secs(60);

/// Whose a Secret is, from its annotations and type. Pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    Absent,
    Ours,
    /// Somebody else's: never overwritten. The message says whose.
    Foreign(String),
}

pub fn ownership(secret: Option<&Secret>, certificate: &str) -> Ownership {
    let Some(secret) = secret else {
        return Ownership::Absent;
    };
    let name = format!(
        "{}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    );
    let managed =
        secret.labels().get(meta::MANAGED_BY).map(String::as_str) == Some(meta::MANAGED_BY_VALUE);
    match secret.annotations().get(meta::CERTIFICATE) {
        Some(owner) if managed && owner == certificate => Ownership::Ours,
        Some(owner) if managed => Ownership::Foreign(format!(
            "Secret {name} belongs to ClusterCertificate {owner}; choose another secretName"
        )),
        _ => Ownership::Foreign(format!(
            "Secret {name} exists and is not managed by certop; certop never overwrites it: delete it or choose another secretName"
        )),
    }
}

/// Delay before retry number `attempts` (1-based): 5s, 10s, 20s, … 5 min.
pub fn retry_after(attempts: i32) -> Duration {
    let shift = attempts.clamp(1, 16) as u32 - 1;
    FIRST_RETRY.saturating_mul(1 << shift).min(MAX_RETRY)
}

/// How long to wait before looking at a valid certificate again.
pub fn requeue_until(renewal_time: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (renewal_time - now)
        .to_std()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_secs(1), MAX_REQUEUE)
}

pub async fn reconcile(cert: Arc<ClusterCertificate>, ctx: Arc<Context>) -> Result<Action, Error> {
    reconcile_with_finalizer(
        "clustercertificate",
        cert,
        &ctx,
        |o| {
            let ctx = ctx.clone();
            async move { apply(&o, &ctx).await }
        },
        |o| {
            let ctx = ctx.clone();
            async move { cleanup(&o, &ctx).await }
        },
    )
    .await
}

pub fn error_policy(cert: Arc<ClusterCertificate>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(certificate = %cert.name_any(), %error, "reconcile failed");
    if error.is_status(409) {
        return Action::requeue(Duration::from_secs(1));
    }
    Action::requeue(Duration::from_secs(10))
}

/// The ClusterCertificates to look at when a CertificateAuthority changes.
pub fn certificates_of_issuer(
    ctx_store: &kube::runtime::reflector::Store<ClusterCertificate>,
    ca: &str,
) -> Vec<ObjectRef<ClusterCertificate>> {
    ctx_store
        .state()
        .iter()
        .filter(|c| c.spec.issuer_ref.name == ca)
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// A state that is not Ready, with the reason and message for the condition.
struct NotReady {
    reason: &'static str,
    message: String,
    retry: Option<Duration>,
}

impl NotReady {
    /// A wait that ends by itself in a moment (a CA being set up) is
    /// recorded in the status but not announced as a warning.
    fn is_transient(&self) -> bool {
        self.reason == "IssuerPending"
    }
}

async fn apply(cert: &ClusterCertificate, ctx: &Context) -> Result<Action, Error> {
    let now = Utc::now();
    let name = cert.name_any();
    let template = match LeafTemplate::from_spec(&cert.spec) {
        Ok(t) => t,
        Err(e) => {
            let not_ready = NotReady {
                reason: "InvalidSpec",
                message: e.to_string(),
                retry: None,
            };
            return not_ready_status(cert, ctx, not_ready, now).await;
        }
    };
    let authority = match issuer(cert, ctx, now).await? {
        Ok(pair) => pair,
        Err(not_ready) => return not_ready_status(cert, ctx, not_ready, now).await,
    };
    let (authority, crl_url) = authority;
    let mut template = template;
    template.crl_distribution_point = crl_url;

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cert.spec.secret_namespace);
    let secret = secrets.get_opt(&cert.spec.secret_name).await?;
    if let Ownership::Foreign(message) = ownership(secret.as_ref(), &name) {
        let not_ready = NotReady {
            reason: "SecretConflict",
            message,
            retry: Some(WAITING_RETRY),
        };
        return not_ready_status(cert, ctx, not_ready, now).await;
    }
    let data = secret.as_ref().map(secret_data);
    let mut policy = RenewalPolicy::from_spec(&cert.spec);
    let revocation = revocation_of(cert);
    policy.revoked_serial = revocation.as_ref().map(|r| r.serial_number.clone());
    policy.requested_at = cert
        .annotations()
        .get(meta::RENEW_REQUESTED_AT)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.to_utc());

    match plan(
        &template,
        &policy,
        data.as_ref(),
        authority.certificate(),
        now,
    ) {
        Plan::UpToDate {
            current,
            renewal_time,
        } => {
            let revision = secret.as_ref().and_then(revision_of);
            let mut status = cert.status.clone().unwrap_or_default();
            let previous = status.clone();
            fill_certificate_fields(&mut status, cert, &current, renewal_time, revision);
            status.failed_issuance_attempts = None;
            let message = format!(
                "certificate is valid until {}",
                current.not_after.to_rfc3339()
            );
            let reason = conditions::find(&status.conditions, READY)
                .filter(|c| c.status == "True")
                .map_or("Issued".to_string(), |c| c.reason.clone());
            conditions::set(
                &mut status.conditions,
                READY,
                true,
                &reason,
                &message,
                cert.metadata.generation,
                now,
            );
            conditions::set(
                &mut status.conditions,
                ISSUING,
                false,
                "UpToDate",
                "no issuance needed",
                cert.metadata.generation,
                now,
            );
            if status != previous {
                ctx.apply_status::<ClusterCertificate>(&name, &status)
                    .await?;
            }
            ctx.metrics
                .certificate(&name, true, Some(current.not_after), Some(renewal_time));
            Ok(Action::requeue(requeue_until(renewal_time, now)))
        }
        Plan::Issue { reason, reuse_key } => {
            issue_certificate(
                cert, ctx, &secrets, secret, &template, &authority, reason, reuse_key, now,
            )
            .await
        }
    }
}

/// The issuing CA, loaded and Ready, with its CRL distribution point; or
/// why the certificate must wait for it.
async fn issuer(
    cert: &ClusterCertificate,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<Result<(Arc<Authority>, Option<String>), NotReady>, Error> {
    let ca_name = &cert.spec.issuer_ref.name;
    let Some(ca) = ctx.cas.get(&ObjectRef::new(ca_name)) else {
        return Ok(Err(NotReady {
            reason: "IssuerNotFound",
            message: format!(
                "CertificateAuthority {ca_name} does not exist; create it or fix spec.issuerRef.name"
            ),
            retry: Some(WAITING_RETRY),
        }));
    };
    if ca.status.as_ref().is_none_or(|s| s.conditions.is_empty()) {
        return Ok(Err(NotReady {
            reason: "IssuerPending",
            message: format!("waiting for CertificateAuthority {ca_name} to be set up"),
            retry: Some(Duration::from_secs(2)),
        }));
    }
    if !certificate_authority::is_ready(&ca) {
        let why = ca
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, READY))
            .map(|c| format!(": {}", c.message))
            .unwrap_or_default();
        return Ok(Err(NotReady {
            reason: "IssuerNotReady",
            message: format!("CertificateAuthority {ca_name} is not Ready{why}"),
            retry: Some(WAITING_RETRY),
        }));
    }
    match load_authority(ctx, &ca, now).await? {
        Ok(authority) => {
            // Certificates point at the CA's CRL, if the CA can sign one.
            let crl_url = authority.certificate().can_sign_crls.then(|| {
                ca.spec
                    .crl
                    .as_ref()
                    .and_then(|c| c.distribution_point_url.clone())
                    .unwrap_or_else(|| ctx.default_crl_url(ca_name))
            });
            Ok(Ok((authority, crl_url)))
        }
        Err(message) => Ok(Err(NotReady {
            reason: "IssuerNotReady",
            message,
            retry: Some(WAITING_RETRY),
        })),
    }
}

/// A CA's signer, parsed from its Secret (cached per Secret version); or
/// why it cannot sign.
pub async fn load_authority(
    ctx: &Context,
    ca: &CertificateAuthority,
    now: DateTime<Utc>,
) -> Result<Result<Arc<Authority>, String>, Error> {
    let ca_name = ca.name_any();
    let secret_name = certificate_authority::secret_name(ca);
    let Some(secret) = ctx.operator_secrets().get_opt(&secret_name).await? else {
        return Ok(Err(format!(
            "the Secret {}/{secret_name} of CertificateAuthority {ca_name} is gone",
            ctx.namespace
        )));
    };
    let data = secret.data.clone().unwrap_or_default();
    let pick = |a: &str, b: &str| {
        data.get(a)
            .or_else(|| data.get(b))
            .map(|v| v.0.clone())
            .unwrap_or_default()
    };
    let version = secret.resource_version().unwrap_or_default();
    Ok(ctx
        .authorities
        .get_or_load(
            &ca_name,
            &version,
            &pick("tls.crt", "ca.crt"),
            &pick("tls.key", "ca.key"),
            now,
        )
        .map_err(|e| format!("CertificateAuthority {ca_name} cannot sign: {e}")))
}

fn secret_data(secret: &Secret) -> SecretData {
    let data = secret.data.as_ref();
    let get = |k: &str| data.and_then(|d| d.get(k)).map(|v| v.0.clone());
    SecretData {
        tls_crt: get(TLS_CERT_KEY),
        tls_key: get(TLS_PRIVATE_KEY_KEY),
        ca_crt: get(CA_CERT_KEY),
    }
}

/// Revokes the current certificate of a ClusterCertificate being deleted
/// (cessationOfOperation) and re-signs the CA's CRL.
async fn revoke_current(cert: &ClusterCertificate, ctx: &Context) -> Result<(), Error> {
    let Some(serial) = cert.status.as_ref().and_then(|s| s.serial_number.clone()) else {
        return Ok(());
    };
    let ca_name = &cert.spec.issuer_ref.name;
    let Some(ca) = ctx.cas.get(&ObjectRef::new(ca_name)) else {
        warn!(certificate = %cert.name_any(), ca = %ca_name, "CA gone; cannot revoke on delete");
        return Ok(());
    };
    let now = Utc::now();
    let authority = match load_authority(ctx, &ca, now).await? {
        Ok(a) => a,
        Err(message) => {
            warn!(certificate = %cert.name_any(), %message, "cannot revoke on delete");
            return Ok(());
        }
    };
    let rule = RevocationRule {
        issued_before: now + chrono::Duration::seconds(1),
        ..Default::default()
    }
    .with_serials([&serial]);
    let reason = RevocationReason::CessationOfOperation;
    let revoked = ledger_store::revoke(
        ctx,
        ca_name,
        &rule,
        reason,
        now,
        authority.certificate().not_after,
    )
    .await?;
    ctx.metrics.revoked(reason.as_str(), revoked.len() as u64);
    if authority.certificate().can_sign_crls {
        let lock = ctx.crl_lock(ca_name);
        let _guard = lock.lock().await;
        crl::publish(ctx, &ca, &authority, now).await?;
    }
    info!(certificate = %cert.name_any(), %serial, "revoked on delete");
    Ok(())
}

/// The revocation certop recorded on a ClusterCertificate, if any.
fn revocation_of(cert: &ClusterCertificate) -> Option<RevocationRecord> {
    cert.annotations()
        .get(meta::REVOCATION)
        .and_then(|r| serde_json::from_str(r).ok())
}

fn revision_of(secret: &Secret) -> Option<i64> {
    secret
        .annotations()
        .get(meta::REVISION)
        .and_then(|r| r.parse().ok())
}

fn fill_certificate_fields(
    status: &mut ClusterCertificateStatus,
    cert: &ClusterCertificate,
    current: &crate::pki::CertificateInfo,
    renewal_time: DateTime<Utc>,
    revision: Option<i64>,
) {
    status.observed_generation = cert.metadata.generation;
    status.secret = Some(format!(
        "{}/{}",
        cert.spec.secret_namespace, cert.spec.secret_name
    ));
    status.not_before = Some(current.not_before);
    status.not_after = Some(current.not_after);
    status.renewal_time = Some(renewal_time);
    status.serial_number = Some(current.serial.to_string());
    status.fingerprint = Some(current.fingerprint.clone());
    if revision.is_some() {
        status.revision = revision;
    }
}

#[allow(clippy::too_many_arguments)]
async fn issue_certificate(
    cert: &ClusterCertificate,
    ctx: &Context,
    secrets: &Api<Secret>,
    existing: Option<Secret>,
    template: &LeafTemplate,
    authority: &Authority,
    reason: IssueReason,
    reuse_key: bool,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let name = cert.name_any();
    // Never reused, even when the Secret (and its annotation) was deleted.
    let revision = existing
        .as_ref()
        .and_then(revision_of)
        .max(cert.status.as_ref().and_then(|s| s.revision))
        .unwrap_or(0)
        + 1;
    let action = format!("IssueRevision{revision}");
    if existing.is_some() {
        ctx.event(
            cert,
            false,
            "Reissuing",
            &action,
            format!("Re-issuing the certificate: {reason}"),
        )
        .await;
    }
    let reused = reuse_key
        .then(|| existing.as_ref().map(secret_data))
        .flatten()
        .and_then(|d| d.tls_key)
        .and_then(|k| String::from_utf8(k).ok())
        .and_then(|k| PrivateKey::from_pem(&k, TLS_PRIVATE_KEY_KEY).ok());
    let issued = reused
        .map(Ok)
        .unwrap_or_else(|| PrivateKey::generate(template.key_algorithm))
        .and_then(|key| issue(template, &key, authority, now).map(|issued| (key, issued)));
    let (key, issued) = match issued {
        Ok(pair) => pair,
        Err(e) => return failed(cert, ctx, &reason, e.to_string(), now).await,
    };
    let leaf = &issued.certificate;
    let mut labels = BTreeMap::from([(
        meta::MANAGED_BY.to_string(),
        meta::MANAGED_BY_VALUE.to_string(),
    )]);
    let mut annotations = BTreeMap::new();
    if let Some(t) = &cert.spec.secret_template {
        labels.extend(t.labels.clone());
        annotations.extend(t.annotations.clone());
    }
    labels.insert(meta::MANAGED_BY.into(), meta::MANAGED_BY_VALUE.into());
    annotations.insert(meta::CERTIFICATE.into(), name.clone());
    annotations.insert(meta::SERIAL.into(), leaf.serial.to_string());
    annotations.insert(meta::REVISION.into(), revision.to_string());
    annotations.insert(meta::ISSUER.into(), cert.spec.issuer_ref.name.clone());
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(cert.spec.secret_name.clone()),
            namespace: Some(cert.spec.secret_namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            resource_version: existing.as_ref().and_then(|s| s.resource_version()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                TLS_CERT_KEY.into(),
                ByteString(issued.chain_pem.clone().into_bytes()),
            ),
            (
                TLS_PRIVATE_KEY_KEY.into(),
                ByteString(key.to_pem().into_bytes()),
            ),
            (
                CA_CERT_KEY.into(),
                ByteString(authority.certificate_pem().as_bytes().to_vec()),
            ),
        ])),
        ..Default::default()
    };
    // The ledger first: a crash after this line leaves an entry for a
    // certificate nobody holds, which is harmless; the other order could
    // hand out a certificate a revocation rule cannot find.
    let ledger_entry = LedgerEntry::of(leaf, Some(&name));
    ledger_store::record(ctx, &cert.spec.issuer_ref.name, ledger_entry, now).await?;
    // Create when absent, replace with the read resourceVersion otherwise:
    // a concurrent writer makes this fail with a conflict instead of being
    // silently overwritten, and the next pass starts from what is there.
    let written = match &existing {
        None => secrets.create(&PostParams::default(), &secret).await,
        Some(_) => {
            secrets
                .replace(&cert.spec.secret_name, &PostParams::default(), &secret)
                .await
        }
    };
    match written {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let not_ready = NotReady {
                reason: "NamespaceNotFound",
                message: format!(
                    "namespace {} does not exist; create it or fix spec.secretNamespace",
                    cert.spec.secret_namespace
                ),
                retry: Some(WAITING_RETRY),
            };
            return not_ready_status(cert, ctx, not_ready, now).await;
        }
        Err(e) => return Err(e.into()),
    }

    let renewal_time = crate::plan::renewal_time(leaf, &RenewalPolicy::from_spec(&cert.spec));
    let mut status = cert.status.clone().unwrap_or_default();
    fill_certificate_fields(&mut status, cert, leaf, renewal_time, Some(revision));
    status.failed_issuance_attempts = None;
    let (ready_reason, event_reason) = match &reason {
        IssueReason::Revoked => {
            status.last_revocation = revocation_of(cert);
            ("Reissued", "Reissued")
        }
        r if existing.is_some() && r.is_renewal() => ("Renewed", "Renewed"),
        _ => ("Issued", "Issued"),
    };
    let mut message = format!(
        "certificate serial {} is valid until {}",
        leaf.serial,
        leaf.not_after.to_rfc3339()
    );
    if issued.clamped_to_ca {
        message.push_str(
            " (cut short to the CA's notAfter: the CA expires before the requested duration)",
        );
    }
    conditions::set(
        &mut status.conditions,
        READY,
        true,
        ready_reason,
        &message,
        cert.metadata.generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        ISSUING,
        false,
        "Issued",
        "issuance complete",
        cert.metadata.generation,
        now,
    );
    ctx.apply_status::<ClusterCertificate>(&name, &status)
        .await?;
    info!(certificate = %name, serial = %leaf.serial, reason = reason.code(), revision, "issued");
    ctx.metrics.issued(reason.code());
    ctx.metrics
        .certificate(&name, true, Some(leaf.not_after), Some(renewal_time));
    ctx.event(
        cert,
        false,
        event_reason,
        &action,
        format!("{message} (revision {revision}; {reason})"),
    )
    .await;
    if issued.clamped_to_ca {
        ctx.event(
            cert,
            true,
            "DurationClamped",
            &action,
            format!(
                "notAfter was cut to the CA's notAfter {}",
                leaf.not_after.to_rfc3339()
            ),
        )
        .await;
    }
    Ok(Action::requeue(requeue_until(renewal_time, now)))
}

/// An issuance failed: count it, say why, and retry with backoff.
async fn failed(
    cert: &ClusterCertificate,
    ctx: &Context,
    reason: &IssueReason,
    error: String,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let name = cert.name_any();
    let mut status = cert.status.clone().unwrap_or_default();
    let attempts = status.failed_issuance_attempts.unwrap_or(0) + 1;
    status.failed_issuance_attempts = Some(attempts);
    status.last_failure_time = Some(now);
    status.observed_generation = cert.metadata.generation;
    let retry = retry_after(attempts);
    let message = format!(
        "issuance failed ({reason}): {error}; attempt {attempts}, next in {}s",
        retry.as_secs()
    );
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        "IssuanceFailed",
        &message,
        cert.metadata.generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        ISSUING,
        true,
        reason.code(),
        &message,
        cert.metadata.generation,
        now,
    );
    ctx.apply_status::<ClusterCertificate>(&name, &status)
        .await?;
    ctx.metrics.failed(reason.code());
    ctx.metrics
        .certificate(&name, false, status.not_after, status.renewal_time);
    ctx.event(cert, true, "IssuanceFailed", reason.code(), message)
        .await;
    Ok(Action::requeue(retry))
}

/// Records why a certificate cannot be issued now. Events are recorded when
/// the reason changes, not on every pass.
async fn not_ready_status(
    cert: &ClusterCertificate,
    ctx: &Context,
    not_ready: NotReady,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    let name = cert.name_any();
    let previous = cert.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = cert.metadata.generation;
    let quiet = not_ready.is_transient();
    let NotReady {
        reason,
        message,
        retry,
    } = not_ready;
    let was = conditions::find(&previous.conditions, READY)
        .map(|c| (c.reason.clone(), c.message.clone()));
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        reason,
        &message,
        cert.metadata.generation,
        now,
    );
    if status != previous {
        ctx.apply_status::<ClusterCertificate>(&name, &status)
            .await?;
    }
    if !quiet && was != Some((reason.to_string(), message.clone())) {
        ctx.event(cert, true, reason, reason, message).await;
    }
    ctx.metrics
        .certificate(&name, false, status.not_after, status.renewal_time);
    Ok(retry.map_or_else(Action::await_change, Action::requeue))
}

/// The ClusterCertificate goes: so does its Secret, unless the policy keeps
/// it or the Secret is not ours.
async fn cleanup(cert: &ClusterCertificate, ctx: &Context) -> Result<Action, Error> {
    let name = cert.name_any();
    ctx.metrics.forget_certificate(&name);
    if cert.spec.revoke_on_delete.unwrap_or(true) {
        revoke_current(cert, ctx).await?;
    }
    if cert.spec.secret_deletion_policy.unwrap_or_default() == SecretDeletionPolicy::Retain {
        info!(certificate = %name, "deleted; Secret retained by policy");
        return Ok(Action::await_change());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cert.spec.secret_namespace);
    let secret = secrets.get_opt(&cert.spec.secret_name).await?;
    if ownership(secret.as_ref(), &name) == Ownership::Ours {
        match secrets
            .delete(&cert.spec.secret_name, &DeleteParams::default())
            .await
        {
            Ok(_) => info!(certificate = %name, "deleted with its Secret"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(managed: bool, owner: Option<&str>) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("tls".into());
        s.metadata.namespace = Some("ns".into());
        if managed {
            s.metadata.labels = Some(BTreeMap::from([(
                meta::MANAGED_BY.into(),
                meta::MANAGED_BY_VALUE.into(),
            )]));
        }
        if let Some(o) = owner {
            s.metadata.annotations = Some(BTreeMap::from([(meta::CERTIFICATE.into(), o.into())]));
        }
        s
    }

    #[test]
    fn secrets_of_others_are_never_ours() {
        assert_eq!(ownership(None, "a"), Ownership::Absent);
        assert_eq!(
            ownership(Some(&secret(true, Some("a"))), "a"),
            Ownership::Ours
        );
        match ownership(Some(&secret(true, Some("b"))), "a") {
            Ownership::Foreign(m) => assert!(m.contains("belongs to ClusterCertificate b"), "{m}"),
            other => panic!("{other:?}"),
        }
        for s in [
            secret(false, None),
            secret(false, Some("a")),
            secret(true, None),
        ] {
            match ownership(Some(&s), "a") {
                Ownership::Foreign(m) => assert!(m.contains("not managed by certop"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn retries_back_off_from_seconds_to_a_cap_of_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(retry_after(0).as_secs(), 5);
        assert_eq!(retry_after(i32::MAX).as_secs(), 300);
    }

    #[test]
    fn requeue_waits_for_the_renewal_time_within_bounds() {
        let now = Utc::now();
        assert_eq!(
            requeue_until(now + chrono::Duration::minutes(5), now),
            Duration::from_secs(300)
        );
        assert_eq!(
            requeue_until(now - chrono::Duration::minutes(5), now),
            Duration::from_secs(1)
        );
        assert_eq!(
            requeue_until(now + chrono::Duration::days(60), now),
            MAX_REQUEUE
        );
    }
}
