//! Durations as the binaries take them in flags and environment variables: `500ms`, `30s`, `5m`,
//! `1h`, `24h`, `7d`, and sums like `1h30m`; and a short human form for printing them.
//!
//! [`parse_duration`] requires a unit on every part (the controller and the proxy: a bare `10`
//! is refused rather than guessed); [`parse_duration_or_seconds`] also takes a bare number of
//! seconds (the `idbind` CLI's `--timeout 30`). Both name the input in their errors, so they fit
//! clap's `value_parser` as they are.
//!
//! ```
//! use std::time::Duration;
//! use idbind_model::duration::{human, parse_duration, parse_duration_or_seconds};
//!
//! assert_eq!(parse_duration("1h30m")?, Duration::from_secs(5400));
//! assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
//! assert!(parse_duration("10").is_err());
//! assert_eq!(parse_duration_or_seconds("10")?, Duration::from_secs(10));
//! assert_eq!(human(Duration::from_secs(200)), "3m20s");
//! # Ok::<(), idbind_model::Error>(())
//! ```

use std::time::Duration;

use crate::Error;

/// Parses a duration written as one or more `<integer><unit>` parts, units `ms`, `s`, `m`, `h`,
/// `d` (`30s`, `5m`, `24h`, `1h30m`), surrounding whitespace ignored.
///
/// Fails with [`Error::InvalidDuration`], naming the input and what is wrong, on an empty input, a
/// missing or unknown unit, or a duration that does not fit in [`Duration`]'s seconds (`u64`).
pub fn parse_duration(input: &str) -> Result<Duration, Error> {
    parse(input, false)
}

/// Like [`parse_duration`], but a bare integer is a number of seconds (`45` is `45s`).
pub fn parse_duration_or_seconds(input: &str) -> Result<Duration, Error> {
    parse(input, true)
}

fn parse(input: &str, bare_seconds: bool) -> Result<Duration, Error> {
    let err = |reason: &str| Error::InvalidDuration {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if bare_seconds && let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
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
        let (unit, tail) = rest.split_at(unit_len);
        rest = tail;
        let secs = |factor: u64| {
            value
                .checked_mul(factor)
                .map(Duration::from_secs)
                .ok_or_else(|| err("too large"))
        };
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => secs(60)?,
            "h" => secs(3600)?,
            "d" => secs(86_400)?,
            "" => return Err(err("a unit is missing (ms, s, m, h or d)")),
            _ => return Err(err(&format!("unknown unit '{unit}' (expected ms, s, m, h or d)"))),
        };
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    Ok(total)
}

/// A short human form of a duration, as kubectl prints ages: `45s`, `3m12s`, `25m`, `5h`, `12d`
/// (whole seconds; coarser as the duration grows). What it prints parses back with
/// [`parse_duration`], rounded down to its unit.
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

#[cfg(test)]
mod tests {
    use super::*;

    type Parse = fn(&str) -> Result<Duration, Error>;
    const BOTH: [Parse; 2] = [parse_duration, parse_duration_or_seconds];

    #[test]
    fn parses_units_and_sums() {
        for parse in BOTH {
            for (input, want) in [
                ("30s", Duration::from_secs(30)),
                ("5m", Duration::from_secs(300)),
                ("15m", Duration::from_secs(900)),
                ("1h", Duration::from_secs(3600)),
                ("2h", Duration::from_secs(7200)),
                ("24h", Duration::from_secs(86_400)),
                ("30d", Duration::from_secs(30 * 86_400)),
                ("250ms", Duration::from_millis(250)),
                ("1m30s", Duration::from_secs(90)),
                ("1h30m", Duration::from_secs(5400)),
                ("1s500ms", Duration::from_millis(1500)),
                (" 5s ", Duration::from_secs(5)),
                ("0s", Duration::ZERO),
            ] {
                assert_eq!(parse(input), Ok(want), "{input:?}");
            }
        }
    }

    #[test]
    fn bare_seconds_only_where_allowed() {
        assert_eq!(parse_duration_or_seconds("12"), Ok(Duration::from_secs(12)));
        assert_eq!(parse_duration_or_seconds(" 45 "), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration_or_seconds("0"), Ok(Duration::ZERO));
        for bare in ["10", "12", " 45 "] {
            let e = parse_duration(bare).unwrap_err().to_string();
            assert!(e.contains("unit is missing"), "{bare}: {e}");
        }
    }

    #[test]
    fn rejects_with_a_reason_naming_the_input() {
        for parse in BOTH {
            for (bad, want) in [
                ("", "empty"),
                ("  ", "empty"),
                ("h", "expected a number"),
                ("s", "expected a number"),
                ("soon", "expected a number"),
                ("1h30", "unit is missing"),
                ("5w", "unknown unit 'w'"),
                ("5x", "unknown unit 'x'"),
                ("5y", "unknown unit 'y'"),
                ("1 h", "unknown unit ' h'"),
                ("99999999999999999999s", "too large"),
                ("99999999999999999999", "too large"),
                ("307445734561825861m", "too large"),
                ("5124095576030432h", "too large"),
                ("213503982334602d", "too large"),
                ("18446744073709551615s1s", "too large"),
            ] {
                let e = parse(bad).unwrap_err();
                assert!(
                    matches!(&e, Error::InvalidDuration { input, .. } if input == bad),
                    "{e:?}"
                );
                let e = e.to_string();
                assert!(e.contains(want), "{bad:?}: {e}");
                assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
            }
        }
    }

    #[test]
    fn the_largest_durations_still_parse() {
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Ok(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_duration("18446744073709551615ms"),
            Ok(Duration::from_millis(u64::MAX))
        );
    }

    #[test]
    fn prints_like_kubectl_ages() {
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m0s"),
            (200, "3m20s"),
            (599, "9m59s"),
            (600, "10m"),
            (7200, "120m"),
            (10_800, "3h"),
            (172_799, "47h"),
            (172_800, "2d"),
            (4 * 86_400, "4d"),
        ] {
            let printed = human(Duration::from_secs(secs));
            assert_eq!(printed, want, "{secs}");
            assert!(
                parse_duration(&printed).unwrap() <= Duration::from_secs(secs),
                "{printed}"
            );
        }
        assert_eq!(human(Duration::from_millis(1999)), "1s");
    }
}
