//! The CertificateRevocation controller: revokes what a revocation matches
//! in the CA's ledger, re-signs the CA's CRL, and has each affected
//! ClusterCertificate replaced with a new key.
//!
//! A pass gathers what is (the CA's keys and the CRLs this replica holds,
//! the ledger shards the rule reaches, the ClusterCertificates), asks
//! `decide` (pure) what to do, and makes the writes it names in an order
//! where every prefix is safe: the ledger marks, each key's CRL, the
//! replacements, then the status (`status`, derived in one place). Every
//! pass recomputes what the revocation covers from the ledger, so a pass
//! that failed half-way is finished by the next one; only a pass that did
//! everything writes Ready.

mod decide;
mod offline;
#[cfg(test)]
mod scenarios;
mod status;
mod write;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

pub use decide::{
    CrlStep, CrlSummary, Decision, Issuer, Key, Observed, Replacement, Revocation, decide,
};
pub use status::{API_SERVER_ENFORCEABLE, records};

use crate::api::{CertificateAuthority, CertificateRevocation};
use crate::operator::runtime::finalize::instrumented;
use crate::operator::store::authority_cache::{self, KeyRing};
use crate::operator::store::crl;
use crate::operator::store::ledger_store::{self, RuleShards, rule_of};
use crate::operator::{Context, Error};

const CONTROLLER: &str = "certificaterevocation";

pub async fn reconcile(
    rev: Arc<CertificateRevocation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    instrumented(
        CONTROLLER,
        &rev.name_any(),
        &ctx,
        pass(&rev, &ctx, Utc::now()),
    )
    .await
}

pub fn error_policy(rev: Arc<CertificateRevocation>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::operator::runtime::backoff::retry(CONTROLLER, &rev.name_any(), error, &ctx)
}

/// The CA as the decision sees it, and, when it can sign, the CA and its
/// keys for the writes.
async fn issuer(
    rev: &CertificateRevocation,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<(Issuer, Option<(Arc<CertificateAuthority>, Arc<KeyRing>)>), Error> {
    let ca_name = &rev.spec.issuer_ref.name;
    let Some(ca) = ctx.cas.get(&ObjectRef::new(ca_name)) else {
        return Ok((Issuer::Missing, None));
    };
    let ring = match authority_cache::keyring(ctx, &ca, now).await? {
        authority_cache::Keys::Ready(ring) => ring,
        authority_cache::Keys::Unusable(why) => {
            return Ok((Issuer::NotReady(why.to_string()), None));
        }
    };
    let key = |index: u32, signing: bool, can_sign_crls: bool| Key {
        index,
        signing,
        signs_crls: can_sign_crls,
        crl: ctx.crls.get(&crl::crl_path(ca_name, index)),
    };
    let keys = std::iter::once(key(
        ring.signing_index,
        true,
        ring.signing.certificate().can_sign_crls,
    ))
    .chain(
        ring.previous
            .iter()
            .map(|(i, a)| key(*i, false, a.certificate().can_sign_crls)),
    )
    .collect();
    Ok((Issuer::Ready(keys), Some((ca, ring))))
}

/// The CA keys whose CRL can list a certificate: the signing key and a
/// rotation's old key while its Secret holds it.
fn crl_signing_keys(ring: &KeyRing) -> Vec<(u32, &crate::pki::CertificateInfo)> {
    std::iter::once((ring.signing_index, ring.signing.certificate()))
        .chain(ring.previous.iter().map(|(i, a)| (*i, a.certificate())))
        .filter(|(_, c)| c.can_sign_crls)
        .collect()
}

/// One pass with the clock at `now`.
async fn pass(
    rev: &CertificateRevocation,
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<Action, Error> {
    if decide::finished(rev) {
        return Ok(Action::await_change());
    }
    let (issuer, signer) = issuer(rev, ctx, now).await?;
    let mut rule = rule_of(rev);
    if let Some((_, ring)) = &signer {
        match offline::entries(rev, &crl_signing_keys(ring)) {
            Ok(certificates) => rule.certificates = certificates,
            Err(blocked) => {
                return write::status(ctx, rev, status::blocked(rev, blocked, now)).await;
            }
        }
    }
    let ledger = match &signer {
        Some(_) => ledger_store::read_rule_shards(ctx, &rev.spec.issuer_ref.name, &rule).await?,
        None => RuleShards::default(),
    };
    let certificates = |name: &str| ctx.certificates.get(name);
    let decision = decide(
        &Observed {
            revocation: rev,
            rule: &rule,
            issuer: &issuer,
            ledger: &ledger,
            certificates: &certificates,
        },
        now,
    );
    let revocation = match decision {
        Decision::Finished => return Ok(Action::await_change()),
        Decision::Blocked(blocked) => {
            return write::status(ctx, rev, status::blocked(rev, blocked, now)).await;
        }
        Decision::Revoke(revocation) => revocation,
    };
    // `decide` revokes only for a Ready issuer, which comes with its signer.
    let Some((ca, ring)) = signer else {
        return Ok(Action::requeue(decide::WAITING_RETRY));
    };
    write::ledger(ctx, rev, &rule, &revocation, now).await?;
    let crls = write::crls(ctx, &ca, &ring, &revocation.crls, now).await?;
    for replacement in &revocation.replacements {
        write::replacement(ctx, replacement).await?;
    }
    write::status(ctx, rev, status::revoked(rev, &revocation, &crls, now)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CertificateRevocationSpec, IssuerRef};
    use crate::operator::conditions;

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
        rev.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(conditions::to_timestamp(created)),
        );
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
