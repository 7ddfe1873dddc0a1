//! The rotation's part of a CA pass's decision: the step `rotation::decide`
//! takes from what is observed of the CA's keys and ledger, the status it
//! leaves (`status.rotation`, certop's record in it, the Rotation
//! condition), the Events that say so, and the keys to trust and sign
//! with when no step ends the pass. Pure.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::events::step_event;
use super::{Announcement, Observed, reason_changed};
use crate::api::{CaRotationRecord, CaRotationStatus, CertificateAuthorityStatus, meta};
use crate::core::rotation::{self, Phase, RotationMarks, RotationSettings, Step};
use crate::operator::certificate_authority::rotation::RotationKey;
use crate::operator::certificate_authority::status::{ROTATION, set_or_clear};
use crate::operator::reason::Reason;
use crate::operator::store::authority_cache::{self, KeyRing, RetiringCa};
use crate::pki::Authority;

/// How many holders of a retiring key the status names.
const HOLDERS_SHOWN: usize = 20;

/// The rotation's write in a pass.
#[derive(Debug, PartialEq)]
pub enum RotationWrite {
    /// Record a step: the status (certop's record in it), written at the
    /// resourceVersion the pass read, then its mirror in the annotations
    /// (`marks`) and the Event. The pass ends there.
    Record {
        marks: RotationMarks,
        announcement: Option<Announcement>,
    },
    /// No step: the annotations put back as the record says (a hand edit,
    /// said in an Event), the retired key and its CRL removed, and the
    /// staged key made (after which the status is written and the pass
    /// ends).
    Keep {
        restore_mirror: Option<Announcement>,
        remove_retired: bool,
        create_key: Option<u32>,
    },
}

/// What the rotation decided.
pub struct RotationPlan {
    pub warning: Option<Announcement>,
    pub write: RotationWrite,
    /// The keys to trust and sign with; None when the write ends the pass.
    pub ring: Option<KeyRing>,
}

/// What is known of the rotation's keys and the retiring key's holders.
struct Keys<'a> {
    next: Option<&'a Arc<Authority>>,
    previous: Option<(u32, Arc<Authority>)>,
    retiring: Option<RetiringCa>,
    holders: Vec<&'a crate::core::ledger::LedgerEntry>,
}

/// Decides the rotation's step; fills `status.rotation` (certop's record
/// included) and the Rotation condition.
pub fn plan(
    o: &Observed,
    status: &mut CertificateAuthorityStatus,
    now: DateTime<Utc>,
) -> RotationPlan {
    let marks = o.marks;
    let mut record = authority_cache::record_of(o.ca)
        .cloned()
        .unwrap_or_default();
    marks.write_into(&mut record);
    let keys = keys(o, &mut record, now);
    let step = step(o, marks, &keys, &record, now);
    let phase = marks.phase().unwrap_or(Phase::Stable);
    let mut rotation_status = rotation_status(o, phase, &keys);
    let trouble = trouble(o, &step, phase, &keys, &rotation_status, &record, now);
    let warning = warning(o, trouble.as_ref());
    let generation = o.ca.metadata.generation;
    set_or_clear(&mut status.conditions, ROTATION, trouble, generation, now);
    if commits(&step) {
        let after = marks.after(&step);
        rotation::record_step(&mut record, &after, &step, o.signing.certificate_pem(), now);
        rotation_status.phase = after.phase().unwrap_or(phase).as_str().to_string();
        rotation_status.number = i64::from(after.number);
        rotation_status.record = Some(record);
        let announcement = step_event(o, &step, keys.next, keys.holders.len(), &rotation_status);
        status.rotation = Some(rotation_status);
        let write = RotationWrite::Record {
            marks: after,
            announcement,
        };
        return RotationPlan {
            warning,
            write,
            ring: None,
        };
    }
    let write = keep(o, &step, phase);
    if let Step::Wait { until } = step {
        rotation_status.next_step_at = until;
    }
    if phase == Phase::Staged
        && let Some(n) = keys.next
        && marks.next_fingerprint.is_some()
    {
        rotation_status.next_step_at = rotation::switch_time(
            n.certificate(),
            record.next_trusted_since,
            o.spec.settings.rotation_overlap,
        );
    }
    let switched_at = record.switched_at;
    rotation_status.record = Some(record);
    status.rotation = Some(rotation_status);
    let goes_on = matches!(
        write,
        RotationWrite::Keep {
            create_key: None,
            ..
        }
    );
    RotationPlan {
        warning,
        write,
        ring: goes_on.then(|| ring(o, keys, switched_at)),
    }
}

/// The rotation's keys as observed, and the retiring key's live
/// certificates; the retiring CA certificate goes into `record` while its
/// key is there.
fn keys<'a>(o: &'a Observed, record: &mut CaRotationRecord, now: DateTime<Utc>) -> Keys<'a> {
    let previous = match o.previous_key {
        RotationKey::Usable { index, authority } => Some((*index, authority.clone())),
        _ => None,
    };
    let retiring = authority_cache::retiring_ca(
        o.marks,
        previous.as_ref().map(|(_, a)| a.as_ref()),
        Some(record),
    );
    // Kept from the key while it is there (a rotation switched before the
    // record existed included), so it outlives the key's Secret.
    if let Some(r) = &retiring
        && record.previous_certificate.is_none()
    {
        record.previous_certificate = Some(r.pem.clone());
    }
    Keys {
        next: o.next.usable(),
        previous,
        retiring,
        holders: o
            .marks
            .previous_index()
            .map(|index| crate::core::ledger::live_entries_of_key(&o.ledger.entries, index, now))
            .unwrap_or_default(),
    }
}

/// `status.rotation` before the step: where the rotation stands.
fn rotation_status(o: &Observed, phase: Phase, keys: &Keys) -> CaRotationStatus {
    CaRotationStatus {
        phase: phase.as_str().to_string(),
        number: i64::from(o.marks.number),
        next_serial_number: keys.next.map(|n| n.certificate().serial.to_string()),
        previous_serial_number: keys
            .retiring
            .as_ref()
            .map(|r| r.certificate.serial.to_string()),
        previous_certificates: (phase == Phase::Retiring).then_some(keys.holders.len() as i64),
        next_step_at: None,
        previous_holders: rotation::holder_names(
            &keys.holders,
            o.certificate_exists,
            HOLDERS_SHOWN,
        ),
        record: None,
    }
}

/// The warning Event of a rotation in trouble, when its reason is new.
fn warning(o: &Observed, trouble: Option<&(Reason, String)>) -> Option<Announcement> {
    let previous = o.ca.status.clone().unwrap_or_default();
    trouble
        .filter(|(reason, _)| reason_changed(&previous, ROTATION, *reason))
        .map(|(reason, message)| Announcement {
            reason: *reason,
            warning: true,
            action: "Rotate",
            message: message.clone(),
        })
}

/// The keys to trust and sign with when no step ends the pass: the staged
/// key only once it is bound.
fn ring(o: &Observed, keys: Keys, switched_at: Option<DateTime<Utc>>) -> KeyRing {
    let bound_next = o.marks.next_fingerprint.as_deref();
    KeyRing {
        signing: o.signing.clone(),
        signing_index: o.marks.signing,
        next: keys
            .next
            .cloned()
            .filter(|n| bound_next == Some(n.certificate().fingerprint.as_str())),
        previous: keys.previous,
        retiring: keys.retiring,
        switched_at,
        overlap: o.spec.settings.rotation_overlap,
    }
}

/// The step `rotation::decide` takes, or why none can be taken.
fn step(
    o: &Observed,
    marks: &RotationMarks,
    keys: &Keys,
    record: &CaRotationRecord,
    now: DateTime<Utc>,
) -> Step {
    let settings = &o.spec.settings;
    let unbind_requested = o.spec.stored.recorded
        && marks.next_fingerprint.is_some()
        && !o.ca.annotations().contains_key(meta::CA_NEXT_FINGERPRINT);
    let step = match o.next {
        RotationKey::Unusable(problem) => Step::Blocked(problem.to_string()),
        _ => rotation::decide(&rotation::Observed {
            marks,
            signing: o.signing.certificate(),
            next: keys.next.map(|n| n.certificate()),
            next_trusted_since: record.next_trusted_since,
            previous: keys.retiring.as_ref().map(|r| &r.certificate),
            switched_at: record.switched_at,
            previous_live: keys.holders.len(),
            last_reissue: marks.previous_index().and_then(|index| {
                crate::core::ledger::last_reissue(&o.ledger.entries, index, marks.signing)
            }),
            end_retirement: o
                .ca
                .annotations()
                .get(meta::END_RETIREMENT)
                .map(String::as_str),
            unbind_requested,
            settings: RotationSettings {
                overlap: settings.rotation_overlap,
                rotate_before: settings.rotate_before,
            },
            now,
        }),
    };
    // What an unreadable shard records is not counted above: it may hold
    // certificates of the retiring key that still need it trusted.
    match step {
        Step::Retire { early: false } if !o.ledger.unreadable.is_empty() => {
            let shards: Vec<String> = o.ledger.unreadable.iter().map(|e| e.shard()).collect();
            Step::Blocked(format!(
                "the retiring CA is kept in the trust bundles: ledger shards {} cannot be parsed, and certificates it signed may be recorded there. Restore them (or delete them to give up what they record), or end the retirement with the annotation {}",
                shards.join(", "),
                meta::END_RETIREMENT
            ))
        }
        step => step,
    }
}

/// A step that is certop's record (one status write).
fn commits(step: &Step) -> bool {
    matches!(
        step,
        Step::Start { .. }
            | Step::BindNext { .. }
            | Step::Unbind
            | Step::Switch
            | Step::Retire { .. }
    )
}

/// What is wrong with the rotation, if anything: a step that cannot be
/// taken, then a retiring key whose Secret is gone, then certificates
/// certop does not re-issue that hold the retirement.
fn trouble(
    o: &Observed,
    step: &Step,
    phase: Phase,
    keys: &Keys,
    rotation_status: &CaRotationStatus,
    record: &CaRotationRecord,
    now: DateTime<Utc>,
) -> Option<(Reason, String)> {
    let serial = rotation_status.previous_serial_number.clone();
    let live = keys.holders.len();
    if let Step::Blocked(message) = step {
        return Some((Reason::RotationBlocked, message.clone()));
    }
    if phase != Phase::Retiring {
        return None;
    }
    if let RotationKey::Unusable(why) = o.previous_key {
        let serial = serial.unwrap_or_else(|| "unknown".into());
        let message = match &keys.retiring {
            Some(_) => format!(
                "{why}: the retiring CA certificate (serial {serial}) stays trusted from certop's record (status.rotation.record) until its {live} certificates are re-issued at their turns, but its CRL can no longer be re-signed and goes stale at its nextUpdate. Restore the Secret to keep that CRL fresh"
            ),
            None => format!(
                "{why}, and certop has no record of the retiring CA certificate (serial {serial}): it can no longer be put in the trust bundles. Restore the Secret"
            ),
        };
        return Some((Reason::RetiringKeyMissing, message));
    }
    let overlap = o.spec.settings.rotation_overlap;
    let retire_at = rotation::retire_time(
        rotation::switched_at(o.signing.certificate(), record.switched_at, overlap),
        overlap,
    );
    if live == 0 || now < retire_at {
        return None;
    }
    let serial = serial.unwrap_or_default();
    let shown = rotation::holder_names(&keys.holders, o.certificate_exists, 5);
    Some((
        Reason::RetirementHeld,
        format!(
            "{live} certificates of the retiring CA (serial {serial}) are still valid and certop does not re-issue them (signed for CSRs, or of ClusterCertificates deleted with their Secrets kept): {}{}. The old CA stays trusted until they expire. Revoke them (a CertificateRevocation with their serialNumbers; status.rotation.previousHolders lists them), or end the retirement now with the annotation {}={serial} (they stop verifying)",
            shown.join(", "),
            if live > shown.len() { ", ..." } else { "" },
            meta::END_RETIREMENT
        ),
    ))
}

/// The writes of a pass that takes no step.
fn keep(o: &Observed, step: &Step, phase: Phase) -> RotationWrite {
    // A hand edit of the mirror is undone (the record is what certop
    // acts on), and said.
    let restore_mirror = o.spec.stored.mirror_differs.as_ref().map(|differs| Announcement {
        reason: Reason::RotationMarksRestored,
        warning: true,
        action: "Rotate",
        message: format!(
            "the rotation annotations differ from certop's record (status.rotation.record): {differs}; certop restored them and the rotation goes on from its record. To end a retirement early, set {} to the retiring CA's serial",
            meta::END_RETIREMENT
        ),
    });
    RotationWrite::Keep {
        restore_mirror,
        remove_retired: matches!(step, Step::Wait { .. }) && phase == Phase::Stable,
        create_key: match step {
            Step::CreateKey { index } => Some(*index),
            _ => None,
        },
    }
}
