//! Durations as the API carries them: Go's `time.ParseDuration` syntax, kept
//! as the string the user wrote. Decoding an object never fails or panics on
//! a duration (kube's own `Duration` panics on overflow while a watch event is
//! decoded, a crash loop for every replica); the value is parsed, with every
//! step checked and a bound, where it is used, and a bad one becomes a
//! condition that names the field.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest duration certop accepts anywhere: 100 years. Longer ones are
/// refused at admission (CEL) and, should one get past, by `to_chrono`.
pub const MAX_HOURS: i64 = 876_000;

/// A duration in Go syntax (`90m`, `2160h`, `1h30m`, `1.5s`), optionally in
/// days (`30d`) on the command line only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(String);

/// Why a duration string cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// `units` lists the units where it was written: `d` is a command-line unit only.
    #[error("{text:?} is not a duration: write a number and a unit ({units}), e.g. {example}")]
    Syntax {
        text: String,
        units: &'static str,
        example: &'static str,
    },
    #[error("{0:?} is longer than the longest duration certop accepts ({MAX_HOURS}h, 100 years)")]
    TooLong(String),
}

impl GoDuration {
    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value, checked: never panics, never wraps.
    pub fn to_chrono(&self) -> Result<chrono::Duration, DurationError> {
        let nanos = parse_nanos(&self.0, false)?;
        bounded(nanos, &self.0)
    }

    /// Like `to_chrono`, also accepting days (`30d`), as command-line flags do.
    pub fn to_chrono_with_days(&self) -> Result<chrono::Duration, DurationError> {
        let nanos = parse_nanos(&self.0, true)?;
        bounded(nanos, &self.0)
    }
}

fn bounded(nanos: i128, text: &str) -> Result<chrono::Duration, DurationError> {
    let max = i128::from(MAX_HOURS) * 3_600 * 1_000_000_000;
    if nanos > max {
        return Err(DurationError::TooLong(text.to_string()));
    }
    // Within the bound, so it fits an i64 of nanoseconds (292 years).
    let nanos = i64::try_from(nanos).map_err(|_| DurationError::TooLong(text.to_string()))?;
    Ok(chrono::Duration::nanoseconds(nanos))
}

/// Go's grammar: `[+]?(number unit)+` or `0`, numbers with an optional
/// fraction. Negative durations are refused: none of certop's fields means
/// anything negative.
fn parse_nanos(text: &str, days: bool) -> Result<i128, DurationError> {
    let syntax = || DurationError::Syntax {
        text: text.to_string(),
        units: if days {
            "ns, us, ms, s, m, h, d"
        } else {
            "ns, us, ms, s, m, h"
        },
        example: if days {
            "90m, 2160h or 30d"
        } else {
            "90m or 2160h"
        },
    };
    let too_long = || DurationError::TooLong(text.to_string());
    let mut s = text.strip_prefix('+').unwrap_or(text);
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(syntax());
    }
    let mut total: i128 = 0;
    while !s.is_empty() {
        let number_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(syntax)?;
        let (number, rest) = s.split_at(number_end);
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_end);
        s = rest;
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" if days => 86_400 * 1_000_000_000,
            _ => return Err(syntax()),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(syntax());
        }
        // More digits than any bounded duration needs is simply too long.
        if whole.len() > 24 {
            return Err(too_long());
        }
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| syntax())?
        };
        let mut part = whole.checked_mul(scale).ok_or_else(too_long)?;
        // Fractions below a nanosecond are dropped, as Go does.
        let mut place = scale;
        for digit in fraction.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            part += i128::from(digit - b'0') * place;
        }
        total = total.checked_add(part).ok_or_else(too_long)?;
    }
    Ok(total)
}

impl FromStr for GoDuration {
    type Err = DurationError;

    /// Accepts what the command line accepts (days included) and refuses
    /// what cannot be used, so a flag is checked when it is parsed.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = GoDuration(s.to_string());
        d.to_chrono_with_days()?;
        Ok(d)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl schemars::JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::generate::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<chrono::Duration, DurationError> {
        GoDuration(s.into()).to_chrono()
    }

    #[test]
    fn parses_go_durations() {
        let h = chrono::Duration::hours;
        assert_eq!(parse("2160h"), Ok(h(2160)));
        assert_eq!(parse("1h30m"), Ok(h(1) + chrono::Duration::minutes(30)));
        assert_eq!(parse("1.5s"), Ok(chrono::Duration::milliseconds(1500)));
        assert_eq!(parse(".5h"), Ok(chrono::Duration::minutes(30)));
        assert_eq!(parse("0"), Ok(chrono::Duration::zero()));
        assert_eq!(parse("0s"), Ok(chrono::Duration::zero()));
        assert_eq!(parse("10µs"), Ok(chrono::Duration::microseconds(10)));
        assert_eq!(parse("876000h"), Ok(h(MAX_HOURS)));
    }

    #[test]
    fn refuses_what_it_cannot_use_without_panicking() {
        for bad in ["", "h", "5", "5x", "-5m", "1..5s", "1.2.3s", "5m-", "30d"] {
            assert!(
                matches!(parse(bad), Err(DurationError::Syntax { .. })),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        for long in [
            "876001h",
            "9999999999999999h",
            "99999999999999999999999999999999999999h",
            "170141183460469231731687303715884105727ns",
            "9223372036854775807h9223372036854775807h",
        ] {
            assert!(
                matches!(parse(long), Err(DurationError::TooLong(_))),
                "{long}: {:?}",
                parse(long)
            );
        }
    }

    #[test]
    fn a_bad_flag_is_told_every_unit_it_may_use_days_included() {
        let flag = "2w".parse::<GoDuration>().expect_err("weeks are no unit");
        assert!(flag.to_string().contains("s, m, h, d)"), "{flag}");
        let field = parse("2w").expect_err("weeks are no unit");
        assert!(field.to_string().contains("s, m, h)"), "{field}");
    }

    #[test]
    fn days_only_on_the_command_line() {
        assert!(parse("30d").is_err());
        let flag: GoDuration = "30d".parse().expect("days on the command line");
        assert_eq!(flag.to_chrono_with_days(), Ok(chrono::Duration::days(30)));
        assert!("9999999999d".parse::<GoDuration>().is_err());
        let decoded: GoDuration =
            serde_json::from_str("\"9999999999999999h\"").expect("decoding never fails");
        assert!(decoded.to_chrono().is_err());
    }
}
