//! CA key rotation, decided. A rotation is a short sequence of steps, each
//! one API write, each derived again on the next pass from what is stored
//! (the marks on the CertificateAuthority and the key Secrets), so a pass
//! that fails or a leader that dies part-way leaves a state the next pass
//! finishes, and never a second staged key. Pure: no I/O, no clock of its
//! own; every case is a row in a table test.
//!
//! The keys of a CA are numbered: 0 is the key it started with (in the
//! Secret its spec names), key N is made by rotation N and kept in the
//! Secret `<name>-r<N>`. The CA object carries which key signs, which one
//! is staged and which one is being retired, by fingerprint: a Secret
//! that holds another key is refused, as the signing key's binding is.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::api::meta;
use crate::pki::CertificateInfo;

/// The longest a Kubernetes object name may be.
const MAX_NAME: usize = 253;

/// How long after the switch the last certificate of the old key is
/// re-issued: re-issues are spread over this (or the overlap, if shorter)
/// by each certificate's jitter, not done in one burst.
pub const REISSUE_SPREAD: Duration = Duration::hours(1);

/// The Secret holding key `index` of a CA whose first key lives in `base`;
/// None when the name would be too long for the API.
pub fn key_secret_name(base: &str, index: u32) -> Option<String> {
    let name = match index {
        0 => base.to_string(),
        n => format!("{base}-r{n}"),
    };
    (name.len() <= MAX_NAME).then_some(name)
}

/// What the CertificateAuthority's annotations say of its keys.
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
    /// The latest rotate request, and the one the newest rotation answers.
    pub requested: Option<String>,
    pub answered: Option<String>,
}

impl RotationMarks {
    pub fn of(annotations: &BTreeMap<String, String>) -> Result<Self, String> {
        let index = |key: &str| -> Result<u32, String> {
            match annotations.get(key) {
                None => Ok(0),
                Some(v) => v.parse().map_err(|_| {
                    format!("annotation {key}={v:?} is not a key number; certop wrote a number there: restore it")
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

    pub fn phase(&self) -> Result<Phase, String> {
        match (
            self.number.checked_sub(self.signing),
            &self.previous_fingerprint,
        ) {
            (Some(0), None) => Ok(Phase::Stable),
            (Some(0), Some(_)) if self.signing > 0 => Ok(Phase::Retiring),
            (Some(1), None) => Ok(Phase::Staged),
            _ => Err(format!(
                "the rotation marks do not fit together (rotation {}, signing key {}, retiring key: {}); certop wrote them together: restore the annotations {} and {}",
                self.number,
                self.signing,
                self.previous_fingerprint.is_some(),
                meta::CA_ROTATION,
                meta::CA_SIGNING_KEY
            )),
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
    /// Unexpired, unrevoked certificates the retiring key signed.
    pub previous_live: usize,
    /// When the last certificate of the retiring key was re-issued by the
    /// signing one: its peers get a whole overlap from then to load it,
    /// however late (an operator down, a backlog) the re-issue came.
    pub last_reissue: Option<DateTime<Utc>>,
    pub settings: RotationSettings,
    pub now: DateTime<Utc>,
}

/// The one write a rotation needs next, or why it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do; look again by then (None: when something changes).
    Wait { until: Option<DateTime<Utc>> },
    /// Start rotation `number`: record it (and the request it answers)
    /// on the CA before any key exists, so the key's Secret name is fixed.
    Start {
        number: u32,
        request: Option<String>,
        why: StartReason,
    },
    /// Make the staged key in its (fixed) Secret; created, never replaced.
    CreateKey { index: u32 },
    /// Record the staged key's fingerprint on the CA.
    BindNext { fingerprint: String },
    /// The overlap is over: the staged key signs from now on.
    Switch,
    /// No certificate of the old key is left: it leaves the trust bundles.
    Retire,
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

/// When a staged key starts signing: the overlap after it was made (its
/// notBefore is backdated by the issuance backdate).
pub fn switch_time(next: &CertificateInfo, overlap: Duration) -> DateTime<Utc> {
    next.not_before + crate::pki::BACKDATE + overlap
}

/// The earliest a retiring key leaves the trust bundles: an overlap after
/// the last re-issue was due, so a holder of a replaced certificate has as
/// long to reload it as clients had to learn the new CA.
pub fn retire_time(signing: &CertificateInfo, overlap: Duration) -> DateTime<Utc> {
    switch_time(signing, overlap) + overlap.min(REISSUE_SPREAD) + overlap
}

pub fn decide(o: &Observed) -> Step {
    let marks = o.marks;
    let phase = match marks.phase() {
        Ok(p) => p,
        Err(message) => return Step::Blocked(message),
    };
    match phase {
        Phase::Stable => {
            let requested = marks.requested.is_some() && marks.requested != marks.answered;
            let due = rotation_time(o.signing, &o.settings);
            let why = if requested {
                StartReason::Requested
            } else if due.is_some_and(|t| o.now >= t) {
                StartReason::Due
            } else {
                return Step::Wait { until: due };
            };
            match marks.number.checked_add(1) {
                Some(number) => Step::Start {
                    number,
                    request: marks.requested.clone(),
                    why,
                },
                None => Step::Blocked("the CA has rotated as often as certop can count".into()),
            }
        }
        Phase::Staged => match (o.next, &marks.next_fingerprint) {
            (None, None) => Step::CreateKey {
                index: marks.number,
            },
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
                let at = switch_time(next, o.settings.overlap);
                if o.now >= at {
                    Step::Switch
                } else {
                    Step::Wait { until: Some(at) }
                }
            }
        },
        Phase::Retiring if o.previous_live > 0 => Step::Wait { until: None },
        Phase::Retiring => {
            let at = retire_time(o.signing, o.settings.overlap).max(
                o.last_reissue
                    .map_or(DateTime::<Utc>::MIN_UTC, |t| t + o.settings.overlap),
            );
            if o.now >= at {
                Step::Retire
            } else {
                Step::Wait { until: Some(at) }
            }
        }
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
    pub fn new(previous: CertificateInfo, signing: &CertificateInfo, overlap: Duration) -> Self {
        Reissue {
            previous,
            switched_at: switch_time(signing, overlap),
            spread: overlap.min(REISSUE_SPREAD),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Authority, CaRequest};

    fn marks(pairs: &[(&str, &str)]) -> RotationMarks {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RotationMarks::of(&map).expect("marks")
    }

    #[test]
    fn key_secrets_are_named_by_their_index() {
        assert_eq!(key_secret_name("web-ca", 0).as_deref(), Some("web-ca"));
        assert_eq!(key_secret_name("web-ca", 3).as_deref(), Some("web-ca-r3"));
        assert_eq!(key_secret_name(&"a".repeat(251), 1), None);
        assert!(key_secret_name(&"a".repeat(253), 0).is_some());
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
        let switch = t0 + Duration::days(81);
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
        type Case<'a> = (
            &'a str,
            &'a RotationMarks,
            Option<&'a CertificateInfo>,
            usize,
            RotationSettings,
            DateTime<Utc>,
            Step,
        );
        let cases: Vec<Case> = vec![
            (
                "young CA waits for its rotation time",
                &stable,
                None,
                0,
                settings,
                t0,
                Step::Wait { until: Some(due) },
            ),
            (
                "due",
                &stable,
                None,
                0,
                settings,
                due,
                start(StartReason::Due, None),
            ),
            (
                "on request only: never due",
                &stable,
                None,
                0,
                on_request,
                old.not_after,
                Step::Wait { until: None },
            ),
            (
                "a request starts it at once",
                &requested,
                None,
                0,
                on_request,
                t0,
                start(StartReason::Requested, Some("r1")),
            ),
            (
                "an answered request does not start another",
                &answered,
                None,
                0,
                on_request,
                t0,
                Step::Wait { until: None },
            ),
            (
                "started: make the key",
                &staged,
                None,
                0,
                settings,
                due,
                Step::CreateKey { index: 1 },
            ),
            (
                "key made: bind it",
                &staged,
                Some(new),
                0,
                settings,
                due,
                Step::BindNext {
                    fingerprint: new.fingerprint.clone(),
                },
            ),
            (
                "bound: wait out the overlap",
                &bound,
                Some(new),
                0,
                settings,
                switch - Duration::seconds(1),
                Step::Wait {
                    until: Some(switch),
                },
            ),
            (
                "overlap over: switch",
                &bound,
                Some(new),
                0,
                settings,
                switch,
                Step::Switch,
            ),
            (
                "retiring with certificates left",
                &retiring,
                None,
                3,
                settings,
                switch,
                Step::Wait { until: None },
            ),
            (
                "retiring, none left, holders still reloading",
                &retiring,
                None,
                0,
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
                0,
                settings,
                retire,
                Step::Retire,
            ),
        ];
        for (name, m, next, live, s, now, expected) in cases {
            let signing = if m.signing == 1 { new } else { old };
            let o = Observed {
                marks: m,
                signing,
                next,
                previous_live: live,
                last_reissue: None,
                settings: s,
                now,
            };
            assert_eq!(decide(&o), expected, "{name}");
            // A re-issue that came late moves the retirement to an overlap after it.
            if expected == Step::Retire {
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
                assert_eq!(decide(&early), Step::Retire, "{name}, re-issued in time");
            }
        }
        for (name, m, next) in [
            ("staged key deleted after binding", &bound, None),
            ("staged key swapped", &other, Some(new)),
        ] {
            let o = Observed {
                marks: m,
                signing: old,
                next,
                previous_live: 0,
                last_reissue: None,
                settings,
                now: switch,
            };
            assert!(matches!(decide(&o), Step::Blocked(_)), "{name}");
        }
    }

    #[test]
    fn a_ca_serves_half_its_life_whatever_renew_before_says() {
        let t0 = Utc::now();
        let mut request = CaRequest::new("ca");
        request.lifetime = Duration::hours(10);
        let ca = Authority::create(&request, t0).expect("ca");
        let s = RotationSettings {
            overlap: Duration::zero(),
            rotate_before: Some(Duration::hours(100)),
        };
        let at = rotation_time(ca.certificate(), &s).expect("automatic");
        assert!(at >= ca.certificate().not_before + Duration::hours(5));
    }
}
