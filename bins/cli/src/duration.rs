//! Durations on the command line: `90s`, `2m`, `1h30m`, `500ms`, or bare seconds.

use std::time::Duration;

/// Parses a duration like `30s`, `2m`, `1h30m`, `500ms` or `45` (seconds).
pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("expected a duration like 30s, 2m or 1h".to_owned());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("{input:?} is not a duration like 30s, 2m or 1h30m"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{input:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            "d" => Duration::from_secs(value.saturating_mul(86_400)),
            _ => return Err(format!("{input:?}: unknown unit {unit:?}; use ms, s, m, h or d")),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// A short human form of a duration, as kubectl prints ages: `45s`, `3m12s`, `5h`, `12d`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=119 => format!("{secs}s"),
        120..=599 => format!("{}m{}s", secs / 60, secs % 60),
        600..=10_799 => format!("{}m", secs / 60),
        10_800..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The age of a timestamp relative to now (`<unknown>` for the future beyond a small skew).
pub fn age(then: jiff::Timestamp) -> String {
    let now = jiff::Timestamp::now();
    match std::time::Duration::try_from(now.duration_since(then)) {
        Ok(d) => human(d),
        Err(_) => "0s".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("12"), Ok(Duration::from_secs(12)));
        assert!(parse("soon").unwrap_err().contains("soon"));
        assert!(parse("5y").unwrap_err().contains("unit"));
        assert_eq!(human(Duration::from_secs(59)), "59s");
        assert_eq!(human(Duration::from_secs(200)), "3m20s");
        assert_eq!(human(Duration::from_secs(7200)), "120m");
        assert_eq!(human(Duration::from_secs(4 * 86_400)), "4d");
    }
}
