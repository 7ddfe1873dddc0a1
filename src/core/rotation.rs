//! CA key rotation, decided. A rotation is a short sequence of steps, each
//! one API write, each derived again on the next pass from what is stored
//! (certop's record of the rotation in the CA's status, and the key
//! Secrets), so a pass that fails or a leader that dies part-way leaves a
//! state the next pass finishes, and never a second staged key. Pure: no
//! I/O, no clock of its own; every case is a row in a table test.
//!
//! The keys of a CA are numbered: 0 is the key it started with (in the
//! Secret its spec names), key N is made by rotation N and kept in the
//! Secret `<name>-r<N>` (shortened with a digest when that is too long).
//! The record carries which key signs, which one is staged and which one
//! is being retired, by fingerprint: a Secret that holds another key is
//! refused, as the signing key's binding is. The annotations on the CA
//! mirror the record (they were the record before it existed, and are read
//! once to start it): an edit of them never moves a rotation.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::api::{CaRotationRecord, meta, object_name};
use crate::pki::CertificateInfo;

/// How long after the switch the last certificate of the old key is
/// re-issued: re-issues are spread over this (or the overlap, if shorter)
/// by each certificate's jitter, not done in one burst.
pub const REISSUE_SPREAD: Duration = Duration::hours(1);

/// The Secret holding key `index` of a CA whose first key lives in `base`:
/// `<base>-r<index>`, shortened with a digest of `base` when that would be
/// too long for the API, so a CA of any admitted name can rotate.
pub fn key_secret_name(base: &str, index: u32) -> String {
    match index {
        0 => base.to_string(),
        n => object_name::with_suffix(base, &format!("-r{n}")),
    }
}

/// Which keys a CA has, as certop recorded them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationMarks {
    /// The newest rotation (0: none yet).
    pub number: u32,
    /// The index of the key that signs.
    pub signing: u32,
    /// Fingerprint of the signing key's certificate (its binding).
    pub signing_fingerprint: Option<String>,
    /// Fingerprint of the staged key, once bound.
    pub next_fingerprint: Option<String>,
    /// Fingerprint of the key being retired.
    pub previous_fingerprint: Option<String>,
    /// The latest rotate request (the user's annotation), and the one the
    /// newest rotation answers.
    pub requested: Option<String>,
    pub answered: Option<String>,
}

/// Why certop's marks of a CA's keys cannot be read. certop wrote them
/// (in its record, or in the annotations before the record existed), so
/// each says what to restore.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarksError {
    #[error(
        "annotation {key}={value:?} is not a key number; certop wrote a number there: restore it"
    )]
    Annotation { key: &'static str, value: String },
    #[error("status.rotation.record.{field} is {value}, not a key number")]
    Record { field: &'static str, value: i64 },
    #[error(
        "the rotation marks do not fit together (rotation {number}, signing key {signing}, retiring key: {retiring}); certop wrote them together: restore the annotations {rotation} and {signing_key}",
        rotation = meta::CA_ROTATION,
        signing_key = meta::CA_SIGNING_KEY
    )]
    Inconsistent {
        number: u32,
        signing: u32,
        retiring: bool,
    },
}

/// The rotation annotations certop writes on a CA (the mirror of its
/// record); `ROTATE_REQUESTED_AT` is the user's and not among them.
pub const MIRRORED: [&str; 6] = [
    meta::CA_ROTATION,
    meta::CA_SIGNING_KEY,
    meta::CA_FINGERPRINT,
    meta::CA_NEXT_FINGERPRINT,
    meta::CA_PREVIOUS_FINGERPRINT,
    meta::ROTATE_REQUEST_ANSWERED,
];

impl RotationMarks {
    /// The marks as the annotations say (how certop recorded them before
    /// the record existed).
    pub fn of(annotations: &BTreeMap<String, String>) -> Result<Self, MarksError> {
        let index = |key: &'static str| -> Result<u32, MarksError> {
            match annotations.get(key) {
                None => Ok(0),
                Some(v) => v.parse().map_err(|_| MarksError::Annotation {
                    key,
                    value: v.clone(),
                }),
            }
        };
        let text = |key: &str| annotations.get(key).cloned();
        Ok(RotationMarks {
            number: index(meta::CA_ROTATION)?,
            signing: index(meta::CA_SIGNING_KEY)?,
            signing_fingerprint: text(meta::CA_FINGERPRINT),
            next_fingerprint: text(meta::CA_NEXT_FINGERPRINT),
            previous_fingerprint: text(meta::CA_PREVIOUS_FINGERPRINT),
            requested: text(meta::ROTATE_REQUESTED_AT),
            answered: text(meta::ROTATE_REQUEST_ANSWERED),
        })
    }

    /// The marks as certop's record says; the request is the user's
    /// annotation.
    pub fn of_record(
        record: &CaRotationRecord,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Self, MarksError> {
        let index = |field: &'static str, value: i64| {
            u32::try_from(value).map_err(|_| MarksError::Record { field, value })
        };
        Ok(RotationMarks {
            number: index("number", record.number)?,
            signing: index("signingKey", record.signing_key)?,
            signing_fingerprint: record.signing_fingerprint.clone(),
            next_fingerprint: record.next_fingerprint.clone(),
            previous_fingerprint: record.previous_fingerprint.clone(),
            requested: annotations.get(meta::ROTATE_REQUESTED_AT).cloned(),
            answered: record.answered_request.clone(),
        })
    }

    /// Writes the marks into a record, keeping what else it holds.
    pub fn write_into(&self, record: &mut CaRotationRecord) {
        record.number = i64::from(self.number);
        record.signing_key = i64::from(self.signing);
        record.signing_fingerprint = self.signing_fingerprint.clone();
        record.next_fingerprint = self.next_fingerprint.clone();
        record.previous_fingerprint = self.previous_fingerprint.clone();
        record.answered_request = self.answered.clone();
    }

    /// The mirrored annotations' values (None: absent; 0 is absent).
    pub fn mirror(&self) -> [(&'static str, Option<String>); 6] {
        let index = |n: u32| (n > 0).then(|| n.to_string());
        [
            (meta::CA_ROTATION, index(self.number)),
            (meta::CA_SIGNING_KEY, index(self.signing)),
            (meta::CA_FINGERPRINT, self.signing_fingerprint.clone()),
            (meta::CA_NEXT_FINGERPRINT, self.next_fingerprint.clone()),
            (
                meta::CA_PREVIOUS_FINGERPRINT,
                self.previous_fingerprint.clone(),
            ),
            (meta::ROTATE_REQUEST_ANSWERED, self.answered.clone()),
        ]
    }

    /// The mirrored annotations that differ from these marks, as
    /// `key=value` (or `key absent`); None when the mirror is true.
    pub fn mirror_difference(&self, annotations: &BTreeMap<String, String>) -> Option<String> {
        let differ: Vec<String> = self
            .mirror()
            .into_iter()
            .filter(|(key, want)| {
                let have = annotations.get(*key);
                match (have, want) {
                    // "0" is how absence reads.
                    (Some(v), None) => {
                        v != "0" || !matches!(*key, meta::CA_ROTATION | meta::CA_SIGNING_KEY)
                    }
                    (have, want) => have != want.as_ref(),
                }
            })
            .map(|(key, _)| match annotations.get(key) {
                Some(v) => format!("{key}={v:?}"),
                None => format!("{key} absent"),
            })
            .collect();
        (!differ.is_empty()).then(|| differ.join(", "))
    }

    pub fn phase(&self) -> Result<Phase, MarksError> {
        match (
            self.number.checked_sub(self.signing),
            &self.previous_fingerprint,
        ) {
            (Some(0), None) => Ok(Phase::Stable),
            (Some(0), Some(_)) if self.signing > 0 => Ok(Phase::Retiring),
            (Some(1), None) => Ok(Phase::Staged),
            _ => Err(MarksError::Inconsistent {
                number: self.number,
                signing: self.signing,
                retiring: self.previous_fingerprint.is_some(),
            }),
        }
    }

    /// The index of the key being retired (phase Retiring).
    pub fn previous_index(&self) -> Option<u32> {
        self.previous_fingerprint
            .as_ref()
            .and_then(|_| self.signing.checked_sub(1))
    }

    /// The index of the staged key (phase Staged).
    pub fn next_index(&self) -> Option<u32> {
        (self.number == self.signing.saturating_add(1)).then_some(self.number)
    }

    /// The marks once `step` is taken: what its one write records.
    pub fn after(&self, step: &Step) -> RotationMarks {
        let mut m = self.clone();
        match step {
            Step::Start {
                number, request, ..
            } => {
                m.number = *number;
                if request.is_some() {
                    m.answered = request.clone();
                }
            }
            Step::BindNext { fingerprint } => m.next_fingerprint = Some(fingerprint.clone()),
            Step::Unbind => m.next_fingerprint = None,
            Step::Switch => {
                m.previous_fingerprint = m.signing_fingerprint.take();
                m.signing_fingerprint = m.next_fingerprint.take();
                m.signing = m.number;
            }
            Step::Retire { .. } => m.previous_fingerprint = None,
            Step::Wait { .. } | Step::CreateKey { .. } | Step::Blocked(_) => {}
        }
        m
    }
}

/// The marks a pass acts on, and whether the annotations mirror them.
#[derive(Debug, PartialEq)]
pub struct StoredMarks {
    /// From the record when there is one; from the annotations (the
    /// record to be) otherwise.
    pub marks: Result<RotationMarks, MarksError>,
    /// Whether they come from certop's record.
    pub recorded: bool,
    /// The mirrored annotations that differ from the record: a hand edit
    /// (or a mirror write that failed), undone by the next write.
    pub mirror_differs: Option<String>,
}

/// Reads the marks: certop's record, or (once, before there is one) the
/// annotations that held them before. An annotation edited, removed or
/// made unreadable by hand changes nothing but the mirror.
pub fn stored_marks(
    annotations: &BTreeMap<String, String>,
    record: Option<&CaRotationRecord>,
) -> StoredMarks {
    match record.map(|r| RotationMarks::of_record(r, annotations)) {
        Some(Ok(marks)) => StoredMarks {
            mirror_differs: marks.mirror_difference(annotations),
            marks: Ok(marks),
            recorded: true,
        },
        Some(Err(message)) => StoredMarks {
            marks: Err(message),
            recorded: true,
            mirror_differs: None,
        },
        None => StoredMarks {
            marks: RotationMarks::of(annotations),
            recorded: false,
            mirror_differs: None,
        },
    }
}

/// Where a rotation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// One key, trusted and signing.
    Stable,
    /// A new key is made (or being made) and trusted; the old one signs.
    Staged,
    /// The new key signs; the old one is trusted until its certificates are gone.
    Retiring,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stable => "Stable",
            Phase::Staged => "Staged",
            Phase::Retiring => "Retiring",
        }
    }
}

/// The rotation settings of a CA.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RotationSettings {
    pub overlap: Duration,
    /// None: rotate only on request.
    pub rotate_before: Option<Duration>,
}

/// What is observed of a CA's keys.
#[derive(Debug)]
pub struct Observed<'a> {
    pub marks: &'a RotationMarks,
    /// The signing key's certificate.
    pub signing: &'a CertificateInfo,
    /// The staged key's certificate, if its Secret holds one.
    pub next: Option<&'a CertificateInfo>,
    /// When certop had published the staged CA in every trust bundle
    /// (its record; None: not yet).
    pub next_trusted_since: Option<DateTime<Utc>>,
    /// The retiring CA's certificate (from its key or certop's record).
    pub previous: Option<&'a CertificateInfo>,
    /// When the signing key began to sign (its record; None for a
    /// rotation switched before the record existed).
    pub switched_at: Option<DateTime<Utc>>,
    /// Unexpired, unrevoked certificates the retiring key signed.
    pub previous_live: usize,
    /// When the last certificate of the retiring key was re-issued by the
    /// signing one: its peers get a whole overlap from then to load it,
    /// however late (an operator down, a backlog) the re-issue came.
    pub last_reissue: Option<DateTime<Utc>>,
    /// The `certop.dev/end-retirement` annotation: the serial of a
    /// retiring CA to retire now.
    pub end_retirement: Option<&'a str>,
    /// The staged key's fingerprint annotation was removed by hand: the
    /// way out of a staged key whose Secret is gone or changed.
    pub unbind_requested: bool,
    pub settings: RotationSettings,
    pub now: DateTime<Utc>,
}

/// The one write a rotation needs next, or why it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do; look again by then (None: when something changes).
    Wait { until: Option<DateTime<Utc>> },
    /// Start rotation `number`: record it (and the request it answers)
    /// before any key exists, so the key's Secret name is fixed.
    Start {
        number: u32,
        request: Option<String>,
        why: StartReason,
    },
    /// Make the staged key in its (fixed) Secret; created, never replaced.
    CreateKey { index: u32 },
    /// Record the staged key's fingerprint.
    BindNext { fingerprint: String },
    /// Forget the staged key's fingerprint (its Secret is gone or holds
    /// another key, and the user removed the annotation): a new key is
    /// staged under the same rotation number.
    Unbind,
    /// The overlap is over: the staged key signs from now on.
    Switch,
    /// The old key leaves the trust bundles: none of its certificates is
    /// left, or (`early`) the user ended its retirement.
    Retire { early: bool },
    /// Cannot go on; the message says what to do.
    Blocked(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartReason {
    Requested,
    Due,
}

/// When a CA starts rotating by itself: `rotate_before` ahead of its end.
pub fn rotation_time(
    signing: &CertificateInfo,
    settings: &RotationSettings,
) -> Option<DateTime<Utc>> {
    settings.rotate_before.map(|before| {
        let lifetime = signing.not_after - signing.not_before;
        // A renewBefore as long as the lifetime would rotate without end:
        // a CA serves at least half its life.
        signing.not_after - before.min(lifetime / 2)
    })
}

/// When a staged key starts signing: an overlap after certop had
/// published it in every trust bundle (and never before an overlap after
/// it was made). None until the publication is recorded. Both times are
/// certop's own clock: no two machines' clocks are compared.
pub fn switch_time(
    next: &CertificateInfo,
    trusted_since: Option<DateTime<Utc>>,
    overlap: Duration,
) -> Option<DateTime<Utc>> {
    trusted_since.map(|t| t.max(next.not_before + crate::pki::BACKDATE) + overlap)
}

/// When the signing key began to sign: as recorded, or (a switch made
/// before the record existed) an overlap after it was made.
pub fn switched_at(
    signing: &CertificateInfo,
    recorded: Option<DateTime<Utc>>,
    overlap: Duration,
) -> DateTime<Utc> {
    recorded.unwrap_or(signing.not_before + crate::pki::BACKDATE + overlap)
}

/// The earliest a retiring key leaves the trust bundles: an overlap after
/// the last re-issue was due, so a holder of a replaced certificate has as
/// long to reload it as clients had to learn the new CA.
pub fn retire_time(switched_at: DateTime<Utc>, overlap: Duration) -> DateTime<Utc> {
    switched_at + overlap.min(REISSUE_SPREAD) + overlap
}

/// A rotation that would switch after the signing CA's own end: its
/// certificates would stop verifying before the new CA signs.
fn too_late(signing: &CertificateInfo, switch: DateTime<Utc>, overlap: Duration) -> Option<String> {
    (switch > signing.not_after).then(|| {
        format!(
            "the new key would sign from {}, after this CA certificate's notAfter {}: everything it signs stops verifying first. Shorten spec.rotation.overlap ({}s) to end before then, or create a new CertificateAuthority and move the certificates to it",
            switch.to_rfc3339(),
            signing.not_after.to_rfc3339(),
            overlap.num_seconds()
        )
    })
}

pub fn decide(o: &Observed) -> Step {
    match o.marks.phase() {
        Ok(Phase::Stable) => decide_stable(o),
        Ok(Phase::Staged) => decide_staged(o),
        Ok(Phase::Retiring) => decide_retiring(o),
        Err(e) => Step::Blocked(e.to_string()),
    }
}

/// No rotation under way: start one when requested or due, unless its
/// switch would come after the CA's notAfter.
fn decide_stable(o: &Observed) -> Step {
    let marks = o.marks;
    let requested = marks.requested.is_some() && marks.requested != marks.answered;
    let due = rotation_time(o.signing, &o.settings);
    let why = if requested {
        StartReason::Requested
    } else if due.is_some_and(|t| o.now >= t) {
        StartReason::Due
    } else {
        return Step::Wait { until: due };
    };
    if let Some(message) = too_late(o.signing, o.now + o.settings.overlap, o.settings.overlap) {
        return Step::Blocked(format!(
            "rotation {} is not started: {message}",
            marks.number.saturating_add(1)
        ));
    }
    match marks.number.checked_add(1) {
        Some(number) => Step::Start {
            number,
            request: marks.requested.clone(),
            why,
        },
        None => Step::Blocked("the CA has rotated as often as certop can count".into()),
    }
}

/// A key is staged: make it, bind it, and switch to it once trusted for
/// the overlap; a staged key whose Secret is gone or changed blocks,
/// unless the user asked to unbind it.
fn decide_staged(o: &Observed) -> Step {
    let marks = o.marks;
    match (o.next, &marks.next_fingerprint) {
        (None, None) => Step::CreateKey {
            index: marks.number,
        },
        (None, Some(_)) | (Some(_), Some(_))
            if o.unbind_requested
                && o.next
                    .is_none_or(|n| Some(&n.fingerprint) != marks.next_fingerprint.as_ref()) =>
        {
            Step::Unbind
        }
        (None, Some(fp)) => Step::Blocked(format!(
            "the Secret of the staged key of rotation {} (fingerprint {fp}) is gone; certop will not make another key for this rotation. Restore the Secret, or remove the annotation {} to make a new staged key",
            marks.number,
            meta::CA_NEXT_FINGERPRINT
        )),
        (Some(next), None) => Step::BindNext {
            fingerprint: next.fingerprint.clone(),
        },
        (Some(next), Some(fp)) if *fp != next.fingerprint => Step::Blocked(format!(
            "the staged key of rotation {} is bound to fingerprint {fp}, but its Secret now holds {}; certop refuses a key it did not make. Restore the Secret, or remove the annotation {} to stage the key it holds",
            marks.number,
            next.fingerprint,
            meta::CA_NEXT_FINGERPRINT
        )),
        (Some(next), Some(_)) => {
            // Not published yet: the pass that publishes records when.
            let Some(at) = switch_time(next, o.next_trusted_since, o.settings.overlap) else {
                return Step::Wait { until: None };
            };
            if let Some(message) = too_late(o.signing, at, o.settings.overlap) {
                return Step::Blocked(format!(
                    "rotation {} cannot switch: {message}",
                    marks.number
                ));
            }
            if o.now >= at {
                Step::Switch
            } else {
                Step::Wait { until: Some(at) }
            }
        }
    }
}

/// The old key is retiring: it leaves when the user ends its retirement,
/// or once none of its certificates is left and the overlap has passed
/// since the switch and the last re-issue.
fn decide_retiring(o: &Observed) -> Step {
    let ended = o
        .end_retirement
        .zip(o.previous)
        .is_some_and(|(serial, p)| serial.eq_ignore_ascii_case(&p.serial.to_string()));
    if ended {
        return Step::Retire { early: true };
    }
    if o.previous_live > 0 {
        return Step::Wait { until: None };
    }
    let switched = switched_at(o.signing, o.switched_at, o.settings.overlap);
    let at = retire_time(switched, o.settings.overlap).max(
        o.last_reissue
            .map_or(DateTime::<Utc>::MIN_UTC, |t| t + o.settings.overlap),
    );
    if o.now >= at {
        Step::Retire { early: false }
    } else {
        Step::Wait { until: Some(at) }
    }
}

/// How the certificates of a retiring key are re-issued by the new one:
/// each at its turn after the switch.
#[derive(Clone, Debug, PartialEq)]
pub struct Reissue {
    /// The retiring CA's certificate.
    pub previous: CertificateInfo,
    /// When the new key began to sign.
    pub switched_at: DateTime<Utc>,
    /// Re-issues are spread over this long from the switch.
    pub spread: Duration,
}

impl Reissue {
    pub fn new(previous: CertificateInfo, switched_at: DateTime<Utc>, overlap: Duration) -> Self {
        Reissue {
            previous,
            switched_at,
            spread: overlap.min(REISSUE_SPREAD),
        }
    }
}

/// certop's record once `step` is taken: the marks `after` it, and what
/// the step fixes besides. A new staged key has not been published yet; a
/// switch records when it happened and the certificate it retires (public,
/// so trust in it outlives its key's Secret); a retirement forgets it.
pub fn record_step(
    record: &mut CaRotationRecord,
    after: &RotationMarks,
    step: &Step,
    signing_pem: &str,
    now: DateTime<Utc>,
) {
    after.write_into(record);
    match step {
        Step::Start { .. } | Step::BindNext { .. } | Step::Unbind => {
            record.next_trusted_since = None;
        }
        Step::Switch => {
            record.next_trusted_since = None;
            record.switched_at = Some(now);
            record.previous_certificate = Some(signing_pem.to_string());
        }
        Step::Retire { .. } => record.previous_certificate = None,
        Step::Wait { .. } | Step::CreateKey { .. } | Step::Blocked(_) => {}
    }
}

/// The certificates that hold a retirement, for the CA's status: serial
/// and the ClusterCertificate it was issued for (said when it no longer
/// exists), or `(CSR)` for one signed for a CertificateSigningRequest;
/// the first `max`, then how many more.
pub fn holder_names(
    holders: &[&crate::core::ledger::LedgerEntry],
    exists: impl Fn(&str) -> bool,
    max: usize,
) -> Vec<String> {
    let mut names: Vec<String> = holders
        .iter()
        .take(max)
        .map(|e| match &e.certificate {
            Some(c) if exists(c) => format!("{} ClusterCertificate {c}", e.serial),
            Some(c) => format!(
                "{} ClusterCertificate {c} (deleted, its Secret kept)",
                e.serial
            ),
            None => format!("{} (CSR)", e.serial),
        })
        .collect();
    if holders.len() > max {
        names.push(format!("and {} more", holders.len() - max));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Authority, CaRequest};

    fn marks(pairs: &[(&str, &str)]) -> RotationMarks {
        RotationMarks::of(&annotations(pairs)).expect("marks")
    }

    /// Marks certop cannot read say what to restore.
    #[test]
    fn marks_certop_cannot_read_say_what_to_restore() {
        fn refusal<T>(r: Result<T, impl std::fmt::Display>) -> String {
            match r {
                Ok(_) => panic!("accepted"),
                Err(e) => e.to_string(),
            }
        }
        assert_eq!(
            refusal(RotationMarks::of(&annotations(&[(
                meta::CA_ROTATION,
                "two"
            )]))),
            format!(
                "annotation {}=\"two\" is not a key number; certop wrote a number there: restore it",
                meta::CA_ROTATION
            )
        );
        let record = CaRotationRecord {
            number: -1,
            ..Default::default()
        };
        assert_eq!(
            refusal(RotationMarks::of_record(&record, &BTreeMap::new())),
            "status.rotation.record.number is -1, not a key number"
        );
        assert_eq!(
            refusal(marks(&[(meta::CA_ROTATION, "3")]).phase()),
            format!(
                "the rotation marks do not fit together (rotation 3, signing key 0, retiring key: false); certop wrote them together: restore the annotations {} and {}",
                meta::CA_ROTATION,
                meta::CA_SIGNING_KEY
            )
        );
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn key_secrets_are_named_by_their_index_and_fit_any_base() {
        assert_eq!(key_secret_name("web-ca", 0), "web-ca");
        assert_eq!(key_secret_name("web-ca", 3), "web-ca-r3");
        // A CA named with 248 characters: `<name>-ca-r1` would be 254.
        let base = format!("{}-ca", "a".repeat(248));
        let name = key_secret_name(&base, 1);
        assert!(name.len() <= 253 && name.ends_with("-r1"), "{name}");
        assert_ne!(name, key_secret_name(&base, 2));
        assert_eq!(key_secret_name(&base, 0), base);
    }

    #[test]
    fn marks_that_do_not_fit_are_refused_not_guessed() {
        let bad = BTreeMap::from([(meta::CA_ROTATION.to_string(), "x".to_string())]);
        assert!(RotationMarks::of(&bad).is_err());
        assert!(marks(&[(meta::CA_ROTATION, "3")]).phase().is_err());
        assert!(
            marks(&[(meta::CA_PREVIOUS_FINGERPRINT, "AA")])
                .phase()
                .is_err(),
            "key 0 has no previous key"
        );
        assert_eq!(
            marks(&[(meta::CA_ROTATION, "2"), (meta::CA_SIGNING_KEY, "1")]).phase(),
            Ok(Phase::Staged)
        );
    }

    /// What a stray edit of the annotations does to the marks a pass acts
    /// on: nothing, once certop has a record; the record-to-be before.
    #[test]
    fn the_record_not_the_annotations_says_where_a_rotation_stands() {
        let retiring = marks(&[
            (meta::CA_ROTATION, "1"),
            (meta::CA_SIGNING_KEY, "1"),
            (meta::CA_FINGERPRINT, "NEW"),
            (meta::CA_PREVIOUS_FINGERPRINT, "OLD"),
        ]);
        let mut record = CaRotationRecord::default();
        retiring.write_into(&mut record);
        let mirror: BTreeMap<String, String> = retiring
            .mirror()
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect();
        let without = |key: &str| {
            let mut a = mirror.clone();
            a.remove(key);
            a
        };
        let with = |key: &str, value: &str| {
            let mut a = mirror.clone();
            a.insert(key.to_string(), value.to_string());
            a
        };
        type Case = (
            &'static str,
            BTreeMap<String, String>,
            Option<&'static CaRotationRecord>,
            Result<Phase, ()>,
            bool,
        );
        let record: &'static CaRotationRecord = Box::leak(Box::new(record));
        let cases: Vec<Case> = vec![
            (
                "the mirror agrees",
                mirror.clone(),
                Some(record),
                Ok(Phase::Retiring),
                false,
            ),
            (
                "retiring annotation removed by hand",
                without(meta::CA_PREVIOUS_FINGERPRINT),
                Some(record),
                Ok(Phase::Retiring),
                true,
            ),
            (
                "rotation annotation made unreadable",
                with(meta::CA_ROTATION, "x"),
                Some(record),
                Ok(Phase::Retiring),
                true,
            ),
            (
                "binding edited",
                with(meta::CA_FINGERPRINT, "OTHER"),
                Some(record),
                Ok(Phase::Retiring),
                true,
            ),
            (
                "no record yet: the annotations (an upgrade mid-rotation)",
                mirror.clone(),
                None,
                Ok(Phase::Retiring),
                false,
            ),
            (
                "no record yet and unreadable annotations",
                with(meta::CA_ROTATION, "x"),
                None,
                Err(()),
                false,
            ),
        ];
        for (name, annotations, record, phase, differs) in cases {
            let stored = stored_marks(&annotations, record);
            let got = stored
                .marks
                .as_ref()
                .map_err(|_| ())
                .and_then(|m| m.phase().map_err(|_| ()));
            assert_eq!(got, phase, "{name}");
            assert_eq!(
                stored.mirror_differs.is_some(),
                differs,
                "{name}: {:?}",
                stored.mirror_differs
            );
            if let Ok(m) = &stored.marks
                && record.is_some()
            {
                assert_eq!(m.signing_fingerprint.as_deref(), Some("NEW"), "{name}");
            }
        }
        // A request is the user's annotation, never mirrored.
        let requested = with(meta::ROTATE_REQUESTED_AT, "r2");
        let stored = stored_marks(&requested, Some(record));
        assert_eq!(stored.mirror_differs, None);
        assert_eq!(
            stored.marks.expect("marks").requested.as_deref(),
            Some("r2")
        );
    }

    #[test]
    fn each_step_records_what_it_did() {
        let stable = marks(&[
            (meta::CA_FINGERPRINT, "A"),
            (meta::ROTATE_REQUESTED_AT, "r1"),
        ]);
        let started = stable.after(&Step::Start {
            number: 1,
            request: Some("r1".into()),
            why: StartReason::Requested,
        });
        assert_eq!(
            (started.number, started.answered.as_deref()),
            (1, Some("r1"))
        );
        assert_eq!(started.phase(), Ok(Phase::Staged));
        let bound = started.after(&Step::BindNext {
            fingerprint: "B".into(),
        });
        let switched = bound.after(&Step::Switch);
        assert_eq!(switched.phase(), Ok(Phase::Retiring));
        assert_eq!(
            (
                switched.signing,
                switched.signing_fingerprint.as_deref(),
                switched.previous_fingerprint.as_deref(),
                switched.next_fingerprint.as_deref()
            ),
            (1, Some("B"), Some("A"), None)
        );
        let retired = switched.after(&Step::Retire { early: false });
        assert_eq!(retired.phase(), Ok(Phase::Stable));
        assert_eq!(bound.after(&Step::Unbind), started);
    }

    #[test]
    fn rotation_steps() {
        let t0 = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .expect("t")
            .to_utc();
        let mut request = CaRequest::new("ca");
        request.lifetime = Duration::days(100);
        let old = Authority::create(&request, t0).expect("ca");
        let old = old.certificate();
        let new = Authority::create(&request, t0 + Duration::days(80)).expect("ca");
        let new = new.certificate();
        let settings = RotationSettings {
            overlap: Duration::hours(24),
            rotate_before: Some(Duration::days(20)),
        };
        let on_request = RotationSettings {
            rotate_before: None,
            ..settings
        };
        let due = old.not_after - Duration::days(20);
        // Published an hour after it was made: the overlap counts from then.
        let published = t0 + Duration::days(80) + Duration::hours(1);
        let switch = published + Duration::hours(24);
        let retire = switch + Duration::hours(25);
        let stable = marks(&[]);
        let requested = marks(&[(meta::ROTATE_REQUESTED_AT, "r1")]);
        let answered = marks(&[
            (meta::ROTATE_REQUESTED_AT, "r1"),
            (meta::ROTATE_REQUEST_ANSWERED, "r1"),
        ]);
        let staged = marks(&[(meta::CA_ROTATION, "1")]);
        let bound = marks(&[
            (meta::CA_ROTATION, "1"),
            (meta::CA_NEXT_FINGERPRINT, &new.fingerprint),
        ]);
        let other = marks(&[(meta::CA_ROTATION, "1"), (meta::CA_NEXT_FINGERPRINT, "BB")]);
        let retiring = marks(&[
            (meta::CA_ROTATION, "1"),
            (meta::CA_SIGNING_KEY, "1"),
            (meta::CA_PREVIOUS_FINGERPRINT, &old.fingerprint),
        ]);
        let start = |why, request: Option<&str>| Step::Start {
            number: 1,
            request: request.map(str::to_string),
            why,
        };
        let old_serial = old.serial.to_string();
        /// name, marks, staged key, published, live, end-retirement, settings, now, step
        type Case<'a> = (
            &'a str,
            &'a RotationMarks,
            Option<&'a CertificateInfo>,
            Option<DateTime<Utc>>,
            usize,
            Option<&'a str>,
            RotationSettings,
            DateTime<Utc>,
            Step,
        );
        let cases: Vec<Case> = vec![
            (
                "young CA waits for its rotation time",
                &stable,
                None,
                None,
                0,
                None,
                settings,
                t0,
                Step::Wait { until: Some(due) },
            ),
            (
                "due",
                &stable,
                None,
                None,
                0,
                None,
                settings,
                due,
                start(StartReason::Due, None),
            ),
            (
                "on request only: never due",
                &stable,
                None,
                None,
                0,
                None,
                on_request,
                old.not_after - Duration::days(2),
                Step::Wait { until: None },
            ),
            (
                "a request starts it at once",
                &requested,
                None,
                None,
                0,
                None,
                on_request,
                t0,
                start(StartReason::Requested, Some("r1")),
            ),
            (
                "an answered request does not start another",
                &answered,
                None,
                None,
                0,
                None,
                on_request,
                t0,
                Step::Wait { until: None },
            ),
            (
                "started: make the key",
                &staged,
                None,
                None,
                0,
                None,
                settings,
                due,
                Step::CreateKey { index: 1 },
            ),
            (
                "key made: bind it",
                &staged,
                Some(new),
                None,
                0,
                None,
                settings,
                due,
                Step::BindNext {
                    fingerprint: new.fingerprint.clone(),
                },
            ),
            (
                "bound, not yet in every bundle: no switch however long it waits",
                &bound,
                Some(new),
                None,
                0,
                None,
                settings,
                switch + Duration::days(5),
                Step::Wait { until: None },
            ),
            (
                "bound and published: wait out the overlap from the publication",
                &bound,
                Some(new),
                Some(published),
                0,
                None,
                settings,
                switch - Duration::seconds(1),
                Step::Wait {
                    until: Some(switch),
                },
            ),
            (
                "an overlap after the publication: switch",
                &bound,
                Some(new),
                Some(published),
                0,
                None,
                settings,
                switch,
                Step::Switch,
            ),
            (
                "retiring with certificates left",
                &retiring,
                None,
                None,
                3,
                None,
                settings,
                switch,
                Step::Wait { until: None },
            ),
            (
                "retiring, the user ends it early by the old serial",
                &retiring,
                None,
                None,
                3,
                Some(old_serial.as_str()),
                settings,
                switch,
                Step::Retire { early: true },
            ),
            (
                "an end-retirement of another CA's serial ends nothing",
                &retiring,
                None,
                None,
                3,
                Some("0abc"),
                settings,
                switch,
                Step::Wait { until: None },
            ),
            (
                "retiring, none left, holders still reloading",
                &retiring,
                None,
                None,
                0,
                None,
                settings,
                switch,
                Step::Wait {
                    until: Some(retire),
                },
            ),
            (
                "retiring, none left, an overlap after the last re-issue was due",
                &retiring,
                None,
                None,
                0,
                None,
                settings,
                retire,
                Step::Retire { early: false },
            ),
        ];
        for (name, m, next, published_at, live, end, s, now, expected) in cases {
            let signing = if m.signing == 1 { new } else { old };
            let o = Observed {
                marks: m,
                signing,
                next,
                next_trusted_since: published_at,
                previous: (m.signing == 1).then_some(old),
                switched_at: (m.signing == 1).then_some(switch),
                previous_live: live,
                last_reissue: None,
                end_retirement: end,
                unbind_requested: false,
                settings: s,
                now,
            };
            assert_eq!(decide(&o), expected, "{name}");
            // A re-issue that came late moves the retirement to an overlap after it.
            if expected == (Step::Retire { early: false }) {
                let late = Observed {
                    last_reissue: Some(now),
                    ..o
                };
                assert_eq!(
                    decide(&late),
                    Step::Wait {
                        until: Some(now + s.overlap)
                    },
                    "{name}, re-issued late"
                );
                let early = Observed {
                    last_reissue: Some(now - s.overlap),
                    ..late
                };
                assert_eq!(
                    decide(&early),
                    Step::Retire { early: false },
                    "{name}, re-issued in time"
                );
            }
        }
        for (name, m, next, unbind, expected) in [
            (
                "staged key deleted after binding",
                &bound,
                None,
                false,
                None,
            ),
            ("staged key swapped", &other, Some(new), false, None),
            (
                "staged key deleted, annotation removed: unbind",
                &bound,
                None,
                true,
                Some(Step::Unbind),
            ),
            (
                "staged key swapped, annotation removed: unbind",
                &other,
                Some(new),
                true,
                Some(Step::Unbind),
            ),
        ] {
            let o = Observed {
                marks: m,
                signing: old,
                next,
                next_trusted_since: Some(published),
                previous: None,
                switched_at: None,
                previous_live: 0,
                last_reissue: None,
                end_retirement: None,
                unbind_requested: unbind,
                settings,
                now: switch,
            };
            match expected {
                Some(step) => assert_eq!(decide(&o), step, "{name}"),
                None => assert!(matches!(decide(&o), Step::Blocked(_)), "{name}"),
            }
        }
    }

    /// A rotation that would switch after the CA's own notAfter is refused
    /// with a message that says so, before it starts and before it switches.
    #[test]
    fn a_rotation_that_would_switch_after_the_ca_expires_is_refused() {
        let t0 = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .expect("t")
            .to_utc();
        let mut request = CaRequest::new("ca");
        request.lifetime = Duration::days(10);
        let old = Authority::create(&request, t0).expect("ca");
        let old = old.certificate();
        let new = Authority::create(&request, t0 + Duration::days(9)).expect("ca");
        let new = new.certificate();
        let settings = RotationSettings {
            overlap: Duration::days(2),
            rotate_before: Some(Duration::days(2)),
        };
        let requested = marks(&[(meta::ROTATE_REQUESTED_AT, "r1")]);
        let bound = marks(&[
            (meta::CA_ROTATION, "1"),
            (meta::CA_NEXT_FINGERPRINT, &new.fingerprint),
        ]);
        let observe = |m, next, published, now| Observed {
            marks: m,
            signing: old,
            next,
            next_trusted_since: published,
            previous: None,
            switched_at: None,
            previous_live: 0,
            last_reissue: None,
            end_retirement: None,
            unbind_requested: false,
            settings,
            now,
        };
        let nine = t0 + Duration::days(9);
        for (name, o) in [
            (
                "requested a day before the end with a 2-day overlap",
                observe(&requested, None, None, nine),
            ),
            (
                "published a day before the end",
                observe(&bound, Some(new), Some(nine), nine),
            ),
        ] {
            match decide(&o) {
                Step::Blocked(message) => assert!(
                    message.contains("notAfter") && message.contains("spec.rotation.overlap"),
                    "{name}: {message}"
                ),
                other => panic!("{name}: {other:?}"),
            }
        }
        // In time, the same requests go on.
        assert!(matches!(
            decide(&observe(&requested, None, None, t0 + Duration::days(5))),
            Step::Start { .. }
        ));
    }

    #[test]
    fn the_holders_of_a_retirement_are_named_by_serial_and_what_they_were_issued_for() {
        let entry = |serial: &str, certificate: Option<&str>| crate::core::ledger::LedgerEntry {
            serial: serial.into(),
            issued_at: 0,
            not_after: 1,
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: vec![],
            certificate: certificate.map(str::to_string),
            revoked: None,
            key: 0,
            fingerprint: None,
        };
        let entries = [
            entry("0a", Some("web")),
            entry("0b", Some("gone")),
            entry("0c", None),
        ];
        let holders: Vec<&crate::core::ledger::LedgerEntry> = entries.iter().collect();
        let exists = |name: &str| name == "web";
        assert_eq!(
            holder_names(&holders, exists, 20),
            vec![
                "0a ClusterCertificate web",
                "0b ClusterCertificate gone (deleted, its Secret kept)",
                "0c (CSR)"
            ]
        );
        assert_eq!(
            holder_names(&holders, exists, 1),
            vec!["0a ClusterCertificate web", "and 2 more"]
        );
    }

    #[test]
    fn a_ca_serves_half_its_life_whatever_renew_before_says() {
        let t0 = Utc::now();
        let mut request = CaRequest::new("ca");
        request.lifetime = Duration::hours(10);
        let ca = Authority::create(&request, t0).expect("ca");
        let s = RotationSettings {
            overlap: Duration::minutes(1),
            rotate_before: Some(Duration::hours(100)),
        };
        let at = rotation_time(ca.certificate(), &s).expect("automatic");
        assert!(at >= ca.certificate().not_before + Duration::hours(5));
    }
}
