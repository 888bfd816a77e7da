//! Ages of timestamps, printed like kubectl's. Duration flags (`90s`, `2m`, `1h30m`, `500ms`, or
//! bare seconds) are parsed by [`idbind_model::duration::parse_duration_or_seconds`] and printed
//! by [`idbind_model::duration::human`].

use idbind_model::duration::human;

/// The age of a timestamp relative to now (`<unknown>` for the future beyond a small skew).
pub fn age(then: jiff::Timestamp) -> String {
    let now = jiff::Timestamp::now();
    match std::time::Duration::try_from(now.duration_since(then)) {
        Ok(d) => human(d),
        Err(_) => "0s".to_owned(),
    }
}
