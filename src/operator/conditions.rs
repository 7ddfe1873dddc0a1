use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const ISSUING: &str = "Issuing";

/// Sets a condition, keeping lastTransitionTime when the status is unchanged
/// so that `kubectl describe` shows when things really changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(to_timestamp(now)));
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: transition,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

pub fn to_timestamp(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// An API time as chrono's, to the second.
pub fn from_timestamp(t: k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    crate::pki::from_unix(t.as_second())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let t1 = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date");
        let t2 = t1 + chrono::Duration::hours(1);
        let mut c = Vec::new();
        set(
            &mut c,
            READY,
            false,
            "IssuerNotReady",
            "waiting",
            Some(1),
            t1,
        );
        set(
            &mut c,
            READY,
            false,
            "IssuerNotReady",
            "still waiting",
            Some(1),
            t2,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time.0, to_timestamp(t1));
        assert_eq!(c[0].message, "still waiting");
        set(&mut c, READY, true, "Issued", "ok", Some(2), t2);
        assert_eq!(c[0].last_transition_time.0, to_timestamp(t2));
        assert!(is_true(&c, READY));
    }
}
