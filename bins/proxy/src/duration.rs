//! Durations for flags: `500ms`, `90s`, `15m`, `2h`, `1d`, and sums like `1m30s`.

use std::time::Duration;

/// Parses one or more `<integer><unit>` parts, units `ms`, `s`, `m`, `h`, `d`.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("the duration is empty; expected e.g. 30s, 500ms or 2m".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("'{s}': expected a number, like 30s, 500ms or 2m"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("'{s}': the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let (unit, tail) = rest.split_at(unit_len);
        rest = tail;
        let secs = |factor: u64| {
            value
                .checked_mul(factor)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("'{s}' is too large"))
        };
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => secs(1)?,
            "m" => secs(60)?,
            "h" => secs(3600)?,
            "d" => secs(86_400)?,
            "" => return Err(format!("'{s}': a unit is missing (ms, s, m, h or d)")),
            other => {
                return Err(format!(
                    "'{s}': unknown unit '{other}' (expected ms, s, m, h or d)"
                ));
            }
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("'{s}' is too large"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("10").unwrap_err().contains("unit is missing"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }
}
