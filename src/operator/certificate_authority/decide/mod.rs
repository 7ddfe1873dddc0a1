//! What a CertificateAuthority pass does, decided from what it observed.
//! Pure: no client, no clock but the `now` it is given, so every branch is
//! a row in a table test.
//!
//! Which key signs is decided first (`key`), since every other read of the
//! pass depends on it. Then `decide` names the pass's writes, in the order
//! the pass makes them, and the status they leave: the binding, a rotation
//! step (certop's record: the pass ends there) or the rotation's other
//! writes, then what to publish (trust bundles, CRLs), whose outcomes
//! `status::finish` adds to the status.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::rotation::RotationKey;
mod events;
mod key;
mod rotation;

use super::status::{self, RESYNC};
use crate::api::{CaSettings, CertificateAuthority, CertificateAuthorityStatus};
use crate::core::rotation::{RotationMarks, StoredMarks, key_secret_name, stored_marks};
use crate::operator::conditions;
use crate::operator::reason::{Blocked, Reason};
use crate::operator::store::authority_cache::KeyRing;
use crate::operator::store::ledger_store;
use crate::pki::{Authority, CertificateInfo};
pub use key::{KeyDecision, KeyObserved, key};
pub use rotation::RotationWrite;

/// An Event the pass records.
#[derive(Clone, Debug, PartialEq)]
pub struct Announcement {
    pub reason: Reason,
    pub warning: bool,
    pub action: &'static str,
    pub message: String,
}

/// The spec as certop reads it, and the rotation marks it acts on.
pub struct Spec {
    pub settings: CaSettings,
    pub stored: StoredMarks,
    pub marks: RotationMarks,
}

/// The settings and marks of a CA, or why it cannot be served.
pub fn spec(ca: &CertificateAuthority) -> Result<Spec, Blocked> {
    let settings = ca
        .settings()
        .map_err(|m| Blocked::new(Reason::InvalidSpec, m.to_string(), None))?;
    // certop's record says which keys the CA has; the annotations only
    // mirror it (and start it, for a CA recorded before it existed).
    let stored = stored_marks(
        ca.annotations(),
        crate::operator::store::authority_cache::record_of(ca),
    );
    let marks = stored
        .marks
        .clone()
        .map_err(|m| Blocked::new(Reason::RotationBlocked, m.to_string(), None))?;
    Ok(Spec {
        settings,
        stored,
        marks,
    })
}

/// When a CA's approaching end is announced: the last fifth of its
/// lifetime (the window a rotation would use). Pure.
pub fn expiry_warning_time(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> DateTime<Utc> {
    not_after - (not_after - not_before) / 5
}

/// What a pass that serves a CA observed, beside its signing key.
pub struct Observed<'a> {
    pub ca: &'a CertificateAuthority,
    pub spec: &'a Spec,
    /// The rotation marks, bound to the signing key.
    pub marks: &'a RotationMarks,
    pub signing: &'a Arc<Authority>,
    pub ledger: &'a ledger_store::Loaded,
    /// The staged key.
    pub next: &'a RotationKey,
    /// The retiring key.
    pub previous_key: &'a RotationKey,
    /// Whether a ClusterCertificate of that name exists.
    pub certificate_exists: &'a dyn Fn(&str) -> bool,
}

/// Every write of a pass that serves a CA, in the order the pass makes
/// them, and the status they leave.
pub struct Decision {
    /// Bind the CA to its key (the annotation), when it is not yet.
    pub bind: Option<String>,
    /// A warning that the rotation is in trouble, when its reason is new.
    pub rotation_warning: Option<Announcement>,
    /// The rotation's write.
    pub rotation: RotationWrite,
    /// What to publish: None when the rotation's write ends the pass.
    pub publish: Option<Box<Publish>>,
    /// The status, before what is published adds to it.
    pub status: CertificateAuthorityStatus,
}

/// What a pass publishes once the rotation is done with for this pass.
pub struct Publish {
    /// The warning that the CA nears its end, when it starts.
    pub expiring_warning: Option<Announcement>,
    /// The trust bundle's ConfigMap name and content.
    pub bundle_name: String,
    pub bundle_pem: String,
    /// The staged CA certificate whose publication is not yet recorded:
    /// the pass checks the certificates' Secrets carry it, and records it
    /// (the overlap counts from then).
    pub awaiting: Option<Awaiting>,
    /// The keys whose CRLs are kept fresh: the retiring one first.
    pub crls: Vec<CrlJob>,
    /// When to look again, before what is published says sooner.
    pub next_look: Duration,
}

/// A staged CA certificate not yet recorded as published.
pub struct Awaiting {
    pub certificate: CertificateInfo,
    pub pem: String,
    pub overlap: chrono::Duration,
}

/// A key whose CRL the pass keeps fresh.
#[derive(Clone)]
pub struct CrlJob {
    pub index: u32,
    pub authority: Arc<Authority>,
    /// The number a stored CRL may not go under (what the status recorded).
    pub floor: Option<u64>,
    /// The signing key's (its CRL fills the status), or the retiring one's.
    pub signing: bool,
}

pub fn decide(o: &Observed, now: DateTime<Utc>) -> Decision {
    let ca = o.ca;
    let previous = ca.status.clone().unwrap_or_default();
    let secret_name = key_secret_name(&o.spec.settings.secret_name, o.spec.marks.signing);
    // Bound by the annotation first, then by certop's record in this
    // pass's status: a pass that dies between them binds from the mirror.
    let bind = o
        .spec
        .marks
        .signing_fingerprint
        .is_none()
        .then(|| o.signing.certificate().fingerprint.clone());
    let mut status = status::serving(ca, &previous, &secret_name, o.signing.certificate(), now);
    let rotation = rotation::plan(o, &mut status, now);
    let publish = rotation
        .ring
        .map(|ring| Box::new(publish(o, &ring, &previous, &mut status, now)));
    Decision {
        bind,
        rotation_warning: rotation.warning,
        rotation: rotation.write,
        publish,
        status,
    }
}

/// The trust bundles and CRLs to publish, and the Expiring condition.
fn publish(
    o: &Observed,
    ring: &KeyRing,
    previous: &CertificateAuthorityStatus,
    status: &mut CertificateAuthorityStatus,
    now: DateTime<Utc>,
) -> Publish {
    let settings = &o.spec.settings;
    let cert = o.signing.certificate();
    let warn_at = expiry_warning_time(cert.not_before, cert.not_after);
    let expiring = (now >= warn_at && settings.rotate_before.is_none() && ring.next.is_none())
        .then(|| expiring_message(o.ca, cert, now));
    let expiring_warning = status::expiring(o.ca, status, previous, expiring, now);
    let until_warning = (warn_at - now)
        .to_std()
        .unwrap_or(RESYNC)
        .max(Duration::from_secs(1));
    // The staged CA is in every trust bundle once the bundles are written:
    // its publication is recorded then, if the certificates' Secrets
    // carry it too.
    let unpublished = status
        .rotation
        .as_ref()
        .and_then(|r| r.record.as_ref())
        .is_some_and(|r| r.next_trusted_since.is_none());
    let awaiting = ring
        .next
        .as_ref()
        .filter(|_| unpublished)
        .map(|next| Awaiting {
            certificate: next.certificate().clone(),
            pem: next.certificate_pem().to_string(),
            overlap: settings.rotation_overlap,
        });
    Publish {
        expiring_warning,
        bundle_name: settings.bundle_name.clone(),
        bundle_pem: ring.bundle_pem(),
        awaiting,
        crls: crl_jobs(ring, previous),
        next_look: RESYNC.min(until_warning),
    }
}

fn expiring_message(
    ca: &CertificateAuthority,
    cert: &CertificateInfo,
    now: DateTime<Utc>,
) -> String {
    format!(
        "the CA certificate expires at {} (in {} days) and spec.rotation.automatic is false; certificates it signs are cut short to that time. Rotate it with `kubectl certop rotate-ca {}`",
        cert.not_after.to_rfc3339(),
        (cert.not_after - now).num_days(),
        ca.name_any()
    )
}

/// Each key that answers for certificates keeps its own CRL fresh: the
/// signing key, and a retiring key until its certificates are gone.
fn crl_jobs(ring: &KeyRing, previous: &CertificateAuthorityStatus) -> Vec<CrlJob> {
    let mut jobs = Vec::new();
    if let Some((index, old)) = &ring.previous
        && old.certificate().can_sign_crls
    {
        jobs.push(CrlJob {
            index: *index,
            authority: old.clone(),
            floor: None,
            signing: false,
        });
    }
    if ring.signing.certificate().can_sign_crls {
        // The number the CA's status recorded for its signing key's CRL
        // is a floor: a stored CRL below it (an earlier one put back) is
        // not current, whatever this replica remembers.
        jobs.push(CrlJob {
            index: ring.signing_index,
            authority: ring.signing.clone(),
            floor: previous.crl_number.and_then(|n| u64::try_from(n).ok()),
            signing: true,
        });
    }
    jobs
}

/// Whether a condition's reason changed from what the status showed.
pub fn reason_changed(previous: &CertificateAuthorityStatus, type_: &str, reason: Reason) -> bool {
    conditions::find(&previous.conditions, type_).map(|c| c.reason.as_str())
        != Some(reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_is_announced_as_expiring_in_the_last_fifth_of_its_life() {
        let nb = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("t")
            .to_utc();
        let na = nb + chrono::Duration::days(100);
        assert_eq!(expiry_warning_time(nb, na), nb + chrono::Duration::days(80));
    }

    use crate::api::meta;
    use crate::operator::conditions::READY;
    use crate::pki::CaRequest;
    use chrono::Duration as Days;

    fn t0() -> DateTime<Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("t")
            .to_utc()
    }

    /// A CA made at t0 for 100 days (its warning time: about t0 + 80 days).
    fn key_of_100_days() -> Arc<Authority> {
        let request = CaRequest {
            lifetime: Days::days(100),
            ..CaRequest::new("table CA")
        };
        Arc::new(Authority::create(&request, t0()).expect("CA"))
    }

    fn ca_object(
        spec: serde_json::Value,
        annotations: &[(&str, &str)],
        status: serde_json::Value,
    ) -> CertificateAuthority {
        let mut full = serde_json::json!({"subject": {"commonName": "table CA"}});
        if let (Some(f), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
            f.extend(extra.clone());
        }
        let annotations: std::collections::BTreeMap<&str, &str> =
            annotations.iter().copied().collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "certop.dev/v1", "kind": "CertificateAuthority",
            "metadata": {"name": "ca", "generation": 1, "annotations": annotations},
            "spec": full, "status": status,
        }))
        .expect("a CertificateAuthority")
    }

    /// `decide` for a CA with no rotation under way, an empty ledger and
    /// the clock at `now`.
    fn decide_at(
        ca: &CertificateAuthority,
        signing: &Arc<Authority>,
        now: DateTime<Utc>,
    ) -> Decision {
        let spec = spec(ca).expect("a valid spec");
        let mut marks = spec.marks.clone();
        marks.signing_fingerprint = Some(signing.certificate().fingerprint.clone());
        let ledger = ledger_store::Loaded::default();
        let none = |_: &str| false;
        decide(
            &Observed {
                ca,
                spec: &spec,
                marks: &marks,
                signing,
                ledger: &ledger,
                next: &RotationKey::Absent,
                previous_key: &RotationKey::Absent,
                certificate_exists: &none,
            },
            now,
        )
    }

    /// What a row expects of the decision.
    #[derive(Debug, PartialEq)]
    struct Expect {
        bind: bool,
        /// The Event of the step recorded, if one is; None: no step.
        step: Option<Reason>,
        expiring_warning: bool,
        expiring: bool,
        next_look_secs: Option<u64>,
    }

    /// The clock moves over one CA's life; each row is one pass's decision.
    #[test]
    fn each_pass_names_its_writes_by_the_clock() {
        let signing = key_of_100_days();
        let fp = signing.certificate().fingerprint.clone();
        let bound = [(meta::CA_FINGERPRINT, fp.as_str())];
        let manual = serde_json::json!({"rotation": {"automatic": false}});
        let expiring_before = serde_json::json!({"conditions": [{"type": "Expiring", "status": "True",
            "reason": "CANearExpiry", "message": "m", "lastTransitionTime": "2026-03-01T00:00:00Z"}]});
        // The certificate is backdated a little: its own times say when.
        let cert = signing.certificate();
        let warn_at = expiry_warning_time(cert.not_before, cert.not_after);
        let none: &[(&str, &str)] = &[];
        let requested = [
            (meta::CA_FINGERPRINT, fp.as_str()),
            (meta::ROTATE_REQUESTED_AT, "r1"),
        ];
        let quiet = |bind, next_look_secs| Expect {
            bind,
            step: None,
            expiring_warning: false,
            expiring: false,
            next_look_secs: Some(next_look_secs),
        };
        // (case, spec, annotations, status, now, expected)
        type Row<'a> = (
            &'a str,
            serde_json::Value,
            &'a [(&'a str, &'a str)],
            serde_json::Value,
            DateTime<Utc>,
            Expect,
        );
        let rows: Vec<Row> = vec![
            (
                "the first pass binds",
                serde_json::json!({}),
                none,
                serde_json::json!({}),
                t0() + Days::days(1),
                quiet(true, 3600),
            ),
            (
                "a bound CA writes no binding",
                serde_json::json!({}),
                &bound,
                serde_json::json!({}),
                t0() + Days::days(1),
                quiet(false, 3600),
            ),
            (
                "half an hour before the warning, it looks again then",
                manual.clone(),
                &bound,
                serde_json::json!({}),
                warn_at - Days::minutes(30),
                quiet(false, 1800),
            ),
            (
                "in its last fifth, a CA that does not rotate says so",
                manual.clone(),
                &bound,
                serde_json::json!({}),
                warn_at + Days::days(5),
                Expect {
                    bind: false,
                    step: None,
                    expiring_warning: true,
                    expiring: true,
                    next_look_secs: Some(3600),
                },
            ),
            (
                "and says it once",
                manual,
                &bound,
                expiring_before,
                warn_at + Days::days(6),
                Expect {
                    bind: false,
                    step: None,
                    expiring_warning: false,
                    expiring: true,
                    next_look_secs: Some(3600),
                },
            ),
            (
                "a CA that rotates starts its rotation instead",
                serde_json::json!({}),
                &bound,
                serde_json::json!({}),
                warn_at + Days::days(5),
                Expect {
                    bind: false,
                    step: Some(Reason::RotationStarted),
                    expiring_warning: false,
                    expiring: false,
                    next_look_secs: None,
                },
            ),
            (
                "a requested rotation starts at once",
                serde_json::json!({}),
                &requested,
                serde_json::json!({}),
                t0() + Days::days(1),
                Expect {
                    bind: false,
                    step: Some(Reason::RotationStarted),
                    expiring_warning: false,
                    expiring: false,
                    next_look_secs: None,
                },
            ),
        ];
        for (case, spec, annotations, status, now, expect) in rows {
            let ca = ca_object(spec, annotations, status);
            let d = decide_at(&ca, &signing, now);
            let step = match &d.rotation {
                RotationWrite::Record { announcement, .. } => {
                    Some(announcement.as_ref().map(|a| a.reason).expect("announced"))
                }
                RotationWrite::Keep {
                    restore_mirror,
                    remove_retired,
                    create_key,
                } => {
                    assert_eq!((restore_mirror, create_key), (&None, &None), "{case}");
                    assert!(
                        *remove_retired,
                        "{case}: a Stable CA clears what a rotation left"
                    );
                    None
                }
            };
            let got = Expect {
                bind: d.bind.is_some(),
                step,
                expiring_warning: d
                    .publish
                    .as_ref()
                    .is_some_and(|p| p.expiring_warning.is_some()),
                expiring: conditions::is_true(&d.status.conditions, status::EXPIRING),
                next_look_secs: d.publish.as_ref().map(|p| p.next_look.as_secs()),
            };
            assert_eq!(got, expect, "{case}");
            assert_eq!(
                d.bind.is_some(),
                d.bind.as_ref() == Some(&fp),
                "{case}: bound to its key"
            );
            assert!(
                conditions::is_true(&d.status.conditions, READY),
                "{case}: Ready"
            );
            assert_eq!(d.status.fingerprint.as_ref(), Some(&fp), "{case}");
            if let Some(p) = &d.publish {
                assert!(
                    p.bundle_pem.contains(signing.certificate_pem().trim()),
                    "{case}"
                );
                assert_eq!(p.crls.len(), 1, "{case}: the signing key's CRL");
                assert!(p.crls[0].signing && p.awaiting.is_none(), "{case}");
            }
        }
    }
}
