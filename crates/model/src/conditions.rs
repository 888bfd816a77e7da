//! Setting Kubernetes status conditions the way controllers are expected to.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Sets condition `type_` in `conditions`. `lastTransitionTime` changes only when the status
/// changes, so watchers can tell how long a binding has been in its state.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = Time(now);
            }
            existing.status = status;
            existing.reason = reason.to_owned();
            existing.message = message;
            existing.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            observed_generation,
            last_transition_time: Time(now),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let t2 = Timestamp::from_second(3_000).unwrap();
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", false, "Pending", "waiting", Some(1), t0);
        set_condition(&mut c, "Ready", false, "StillPending", "still", Some(2), t1);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time.0, t0);
        assert_eq!(c[0].reason, "StillPending");
        assert_eq!(c[0].observed_generation, Some(2));
        set_condition(&mut c, "Ready", true, "Bound", "", Some(2), t2);
        assert_eq!(c[0].last_transition_time.0, t2);
        assert_eq!(c[0].status, "True");
    }
}
