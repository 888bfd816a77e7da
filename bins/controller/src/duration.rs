//! Human-friendly durations for flags: `500ms`, `90s`, `15m`, `2h`, `30d`, and sums like `1h30m`.

use std::time::Duration;

use crate::{Error, Result};

/// Parses a duration written as one or more `<integer><unit>` parts, units `ms`, `s`, `m`, `h`, `d`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(idbind_controller::parse_duration("1h30m")?, Duration::from_secs(5400));
/// assert_eq!(idbind_controller::parse_duration("250ms")?, Duration::from_millis(250));
/// assert!(idbind_controller::parse_duration("10").is_err());
/// # Ok::<(), idbind_controller::Error>(())
/// ```
pub fn parse_duration(input: &str) -> Result<Duration> {
    let err = |reason: &str| Error::InvalidDuration {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(err("expected a number, like 30s, 15m, 2h or 7d"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => value
                .checked_mul(60)
                .map(Duration::from_secs)
                .ok_or_else(|| err("too large"))?,
            "h" => value
                .checked_mul(3600)
                .map(Duration::from_secs)
                .ok_or_else(|| err("too large"))?,
            "d" => value
                .checked_mul(86_400)
                .map(Duration::from_secs)
                .ok_or_else(|| err("too large"))?,
            "" => return Err(err("a unit is missing (ms, s, m, h or d)")),
            _ => return Err(err(&format!("unknown unit '{unit}' (expected ms, s, m, h or d)"))),
        };
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration(" 5s ").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_with_a_reason() {
        for (bad, want) in [
            ("", "empty"),
            ("10", "unit is missing"),
            ("h", "expected a number"),
            ("5w", "unknown unit 'w'"),
            ("99999999999999999999s", "too large"),
        ] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
