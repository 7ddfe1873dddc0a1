//! Issuing into the Secret, in named steps: say an issuance is under way,
//! sign (off the async workers), write the Secret, announce; and recording
//! the certificate the Secret holds in the ledger.

use super::*;

/// What an issuance came to: the Secret holds the new certificate, the
/// pass ended in the status (a signing failure, a Secret the API refused),
/// or the Secret is not what the write was based on (`Written::Changed`:
/// the new certificate was never written nor recorded, so it is as if it
/// had not been signed).
pub(super) enum Issued {
    Held(Box<Held>),
    Ended(Action),
    SecretChanged,
}

/// Signs and writes the Secret, in named steps: say an issuance is under
/// way, sign, write, announce.
pub(super) async fn issue_into_secret(
    cert: &ClusterCertificate,
    ctx: &Context,
    secrets: &Api<Secret>,
    observed: Option<&Secret>,
    base: secret::Base,
    issuance: &decide::Issuance,
    now: DateTime<Utc>,
) -> Result<Issued, Error> {
    let reused = issuance
        .reuse_key
        .then(|| observed.map(secret::secret_data))
        .flatten()
        .and_then(|d| d.tls_key)
        .and_then(|k| String::from_utf8(k).ok());
    let issuing = start_issuing(
        cert,
        ctx,
        issuance,
        reused.is_some(),
        base != secret::Base::Absent,
        now,
    )
    .await?;
    let cert = issuing.as_ref().unwrap_or(cert);
    let signed = match sign(issuance, reused, now).await {
        Ok(signed) => signed,
        Err(e) => {
            let ended = status::failed(cert, ctx, &issuance.reason, e.to_string(), now).await?;
            return Ok(Issued::Ended(ended));
        }
    };
    let provenance = secret::Provenance {
        serial: signed.leaf.serial.to_string(),
        revision: issuance.revision,
        reason: issuance.reason.code(),
        renewal_request: issuance.renewal_request.as_deref(),
    };
    let wanted = secret::desired(cert, signed.data, &provenance);
    let wanted = match secret::apply(secrets, wanted, base, &ctx.written_secrets).await? {
        Written::Stored(applied) => *applied,
        Written::Refused(blocked) => {
            let ended = status::blocked(cert, ctx, blocked, Some(&issuance.reason), now).await?;
            return Ok(Issued::Ended(ended));
        }
        Written::Changed => return Ok(Issued::SecretChanged),
    };
    let leaf = signed.leaf;
    announce_issued(cert, ctx, issuance, &leaf, signed.clamped_to_ca).await;
    let renewal_time = crate::core::plan::renewal_time(&leaf, &renewal_policy(cert));
    Ok(Issued::Held(Box::new(Held {
        secret: wanted,
        leaf,
        renewal_time,
        change_pending_since: None,
        key: issuance.key,
    })))
}

/// The Event that says which revision an issuance writes.
pub(super) fn issue_action(issuance: &decide::Issuance) -> String {
    format!("IssueRevision{}", issuance.revision)
}

/// Says an issuance is under way: in the status while a new RSA key is
/// made (from a tenth of a second to seconds; any other issuance is done
/// in milliseconds, and its Ready write says it all in one request), and
/// by an Event when it replaces a Secret that existed. Some: the
/// certificate as the status write left it.
pub(super) async fn start_issuing(
    cert: &ClusterCertificate,
    ctx: &Context,
    issuance: &decide::Issuance,
    reuses_key: bool,
    replaces: bool,
    now: DateTime<Utc>,
) -> Result<Option<ClusterCertificate>, Error> {
    let slow = !reuses_key && issuance.template.key_algorithm.is_rsa();
    let issuing = match slow {
        true => Some(status::issuing(cert, ctx, &issuance.reason, now).await?),
        false => None,
    };
    // A repair says why before it writes; a renewal (due, requested,
    // expired, a CA rotation's) has one Event, `Renewed` or `Reissued`,
    // when it is done: one Event per issuance.
    if replaces && !issuance.reason.is_renewal() {
        ctx.event_once(
            issuing.as_ref().unwrap_or(cert),
            Reason::Reissuing.as_str(),
            &issue_action(issuance),
            format!("Re-issuing the certificate: {}", issuance.reason),
        )
        .await;
    }
    Ok(issuing)
}

/// Logs and counts an issuance, and warns when the CA's notAfter cut it
/// short.
pub(super) async fn announce_issued(
    cert: &ClusterCertificate,
    ctx: &Context,
    issuance: &decide::Issuance,
    leaf: &CertificateInfo,
    clamped_to_ca: bool,
) {
    info!(certificate = %cert.name_any(), serial = %leaf.serial, reason = issuance.reason.code(), revision = issuance.revision, "issued");
    ctx.metrics.issued(issuance.reason.code());
    if clamped_to_ca {
        ctx.event(
            cert,
            true,
            Reason::DurationClamped.as_str(),
            &issue_action(issuance),
            format!(
                "notAfter was cut to the CA's notAfter {}",
                leaf.not_after.to_rfc3339()
            ),
        )
        .await;
    }
}

/// What a pass holds after its write: the Secret as certop wants it and
/// the certificate in it.
pub(crate) struct Held {
    pub(crate) secret: Secret,
    pub(crate) leaf: CertificateInfo,
    pub(crate) renewal_time: DateTime<Utc>,
    /// A CRL distribution point change waiting for its turn since then.
    pub(crate) change_pending_since: Option<DateTime<Utc>>,
    /// The index of the CA key that signed it.
    pub(crate) key: u32,
}

pub(super) fn renewal_policy(cert: &ClusterCertificate) -> RenewalPolicy {
    RenewalPolicy::from_spec(&cert.spec)
}

/// Generates (or reuses) the key and signs, off the async workers: RSA key
/// generation takes long enough to starve the lease renewal and /healthz.
pub(super) struct Signed {
    pub(crate) data: SecretData,
    pub(crate) leaf: CertificateInfo,
    pub(crate) clamped_to_ca: bool,
}

pub(super) async fn sign(
    issuance: &decide::Issuance,
    reused_key: Option<String>,
    now: DateTime<Utc>,
) -> Result<Signed, Error> {
    let template = issuance.template.clone();
    let authority = issuance.authority.clone();
    let bundle = issuance.bundle.clone();
    let job = tokio::task::spawn_blocking(move || {
        let key = reused_key
            .and_then(|k| PrivateKey::from_pem(&k, TLS_PRIVATE_KEY_KEY).ok())
            .map(Ok)
            .unwrap_or_else(|| PrivateKey::generate(template.key_algorithm))?;
        let issued = issue(&template, &key, &authority, now)?;
        let data = SecretData {
            tls_crt: Some(issued.chain_pem.into_bytes()),
            tls_key: Some(key.to_pem().into_bytes()),
            ca_crt: Some(bundle.into_bytes()),
        };
        Ok::<_, crate::pki::PkiError>(Signed {
            data,
            leaf: issued.certificate,
            clamped_to_ca: issued.clamped_to_ca,
        })
    });
    match job.await {
        Ok(Ok(signed)) => Ok(signed),
        Ok(Err(source)) => Err(Error::Pki {
            what: "issuing".into(),
            source,
        }),
        Err(e) => Err(Error::Task(e)),
    }
}

pub(super) enum Recorded {
    Live,
    /// A CertificateRevocation already covers it: replace it.
    Revoked,
    Blocked(Blocked),
    /// Being written with other passes' records (a backlog): a later pass
    /// takes what the write found.
    Pending,
}

pub(super) fn revoked_for_good(cert: &ClusterCertificate, serial: &str) -> Blocked {
    Blocked::new(
        Reason::IssuanceFailed,
        format!(
            "a CertificateRevocation of {} covers every certificate issued until a time still to come (its issuedBefore); serial {serial} is revoked and no replacement is issued before then",
            cert.spec.issuer_ref.name
        ),
        Some(Duration::from_secs(300)),
    )
}

/// Records the certificate the Secret holds in its CA's ledger
/// (idempotent), applying the CA's revocations to it as it goes in, so a
/// certificate issued while a revocation was being applied is not missed.
pub(super) async fn record(
    cert: &ClusterCertificate,
    ctx: &Arc<Context>,
    leaf: &CertificateInfo,
    key: u32,
    now: DateTime<Utc>,
) -> Result<Recorded, Error> {
    let ca = &cert.spec.issuer_ref.name;
    let rules: Vec<(RevocationRule, RevocationReason)> = ledger_store::rules_of_ca(ctx, ca);
    let entry = LedgerEntry::of(leaf, Some(&cert.name_any()), key);
    use ledger_store::Deferred;
    match ledger_store::record_deferred(ctx, ca, entry, &rules, now).await {
        Ok(Deferred::Pending) => Ok(Recorded::Pending),
        Ok(Deferred::Recorded(ledger_store::Recorded::Revoked)) => Ok(Recorded::Revoked),
        Ok(Deferred::Recorded(ledger_store::Recorded::Live)) => Ok(Recorded::Live),
        Ok(Deferred::Recorded(ledger_store::Recorded::RevokedForGood)) => Ok(Recorded::Blocked(
            revoked_for_good(cert, &leaf.serial.to_string()),
        )),
        Err(Error::Ledger(e)) => Ok(Recorded::Blocked(Blocked::new(
            e.reason(),
            format!(
                "cannot record serial {} in the ledger of {ca}: {e}",
                leaf.serial
            ),
            Some(Duration::from_secs(300)),
        ))),
        Err(e) => Err(e),
    }
}
