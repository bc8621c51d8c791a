//! When a daily snapshot is due and which snapshots have expired: pure
//! functions of a clock reading, a policy and the snapshots that exist, so
//! the schedule is decided the same way by `flyplan snapshots run`, by
//! `flyplan watch` and by the tests.
//!
//! - One snapshot a day per volume: at `now` it is due when scheduling is
//!   on, today's `snapshot_time` (UTC) has come, and no snapshot of the
//!   volume was taken today at or after that time. A day on which nothing
//!   ran is caught up by the next run (that day's snapshot is simply taken
//!   later); two runs on the same day take one.
//! - Retention counts calendar days (UTC): with `retention_days = N` the
//!   snapshots of today and of the N-1 days before are kept, so one
//!   snapshot a day settles at N snapshots. The newest snapshot of a volume
//!   is never removed, even when it is older than that.

use time::{Duration, OffsetDateTime, Time, UtcOffset};

use crate::model::{Agreed, SnapshotPolicySpec};

/// Fly's default retention.
pub const DEFAULT_RETENTION_DAYS: u32 = 5;
/// Longest retention Fly accepts.
pub const MAX_RETENTION_DAYS: u32 = 60;

/// The snapshot policy of one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Take a snapshot every day.
    pub scheduled: bool,
    /// 1..=60.
    pub retention_days: u32,
    /// Time of day (UTC) from which the day's snapshot is due.
    pub at: Time,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            scheduled: true,
            retention_days: DEFAULT_RETENTION_DAYS,
            at: Time::MIDNIGHT,
        }
    }
}

impl Policy {
    /// The policy recorded for a `snapshot_policy.<volume>` resource;
    /// missing or unreadable attributes take Fly's defaults.
    pub fn from_spec(spec: &SnapshotPolicySpec) -> Policy {
        let d = Policy::default();
        Policy {
            scheduled: spec
                .scheduled
                .as_ref()
                .and_then(Agreed::one)
                .copied()
                .unwrap_or(d.scheduled),
            retention_days: spec
                .retention_days
                .as_ref()
                .and_then(Agreed::one)
                .map(|n| (*n).clamp(1, u64::from(MAX_RETENTION_DAYS)) as u32)
                .unwrap_or(d.retention_days),
            at: spec
                .snapshot_time
                .as_deref()
                .and_then(parse_time_of_day)
                .unwrap_or(d.at),
        }
    }
}

/// `"03:30"` → 03:30.
pub fn parse_time_of_day(text: &str) -> Option<Time> {
    let (h, m) = text.trim().split_once(':')?;
    let two_digits = |s: &str| s.len() == 2 && s.chars().all(|c| c.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return None;
    }
    Time::from_hms(h.parse().ok()?, m.parse().ok()?, 0).ok()
}

fn utc(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(UtcOffset::UTC)
}

/// Today's `snapshot_time`, as an instant.
pub fn todays_slot(now: OffsetDateTime, at: Time) -> OffsetDateTime {
    utc(now).replace_time(at)
}

/// Whether a snapshot is due at `now`, given when the volume's snapshots
/// were taken.
pub fn is_due(
    now: OffsetDateTime,
    policy: &Policy,
    taken: impl IntoIterator<Item = OffsetDateTime>,
) -> bool {
    if !policy.scheduled {
        return false;
    }
    let slot = todays_slot(now, policy.at);
    utc(now) >= slot && !taken.into_iter().any(|t| utc(t) >= slot)
}

/// Ids of the snapshots (id, taken at) of one volume that have expired at
/// `now`: taken `retention_days` or more calendar days (UTC) before today.
/// The newest is never among them.
pub fn expired(
    now: OffsetDateTime,
    retention_days: u32,
    snapshots: &[(String, OffsetDateTime)],
) -> Vec<String> {
    let newest = snapshots
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
        .map(|s| s.0.clone());
    let keep_from = utc(now).date() - Duration::days(i64::from(retention_days.max(1)) - 1);
    let mut out: Vec<(OffsetDateTime, String)> = snapshots
        .iter()
        .filter(|(id, t)| utc(*t).date() < keep_from && Some(id) != newest.as_ref())
        .map(|(id, t)| (*t, id.clone()))
        .collect();
    out.sort();
    out.into_iter().map(|(_, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, time};

    fn policy(retention_days: u32, at: Time) -> Policy {
        Policy {
            scheduled: true,
            retention_days,
            at,
        }
    }

    fn snap(id: &str, t: OffsetDateTime) -> (String, OffsetDateTime) {
        (id.to_string(), t)
    }

    #[test]
    fn the_first_run_after_the_snapshot_time_is_due() {
        let p = policy(5, time!(03:00));
        assert!(is_due(datetime!(2026-11-21 03:00 UTC), &p, []));
        assert!(is_due(datetime!(2026-11-21 23:59 UTC), &p, []));
    }

    #[test]
    fn nothing_is_due_before_the_snapshot_time() {
        let p = policy(5, time!(03:00));
        assert!(!is_due(datetime!(2026-11-21 02:59 UTC), &p, []));
        let yesterday = datetime!(2026-11-20 03:10 UTC);
        assert!(!is_due(datetime!(2026-11-21 02:59 UTC), &p, [yesterday]));
    }

    #[test]
    fn a_second_run_on_the_same_day_takes_nothing() {
        let p = policy(5, time!(03:00));
        let taken = datetime!(2026-11-21 03:05 UTC);
        assert!(!is_due(datetime!(2026-11-21 10:00 UTC), &p, [taken]));
        assert!(!is_due(datetime!(2026-11-21 23:59 UTC), &p, [taken]));
    }

    #[test]
    fn a_snapshot_taken_before_the_time_does_not_count_for_the_day() {
        let p = policy(5, time!(03:00));
        let early = datetime!(2026-11-21 01:00 UTC);
        assert!(is_due(datetime!(2026-11-21 04:00 UTC), &p, [early]));
    }

    #[test]
    fn a_missed_day_is_taken_by_the_next_run() {
        let p = policy(5, time!(00:00));
        let two_days_ago = datetime!(2026-11-19 00:10 UTC);
        assert!(is_due(datetime!(2026-11-21 08:00 UTC), &p, [two_days_ago]));
    }

    #[test]
    fn scheduling_off_is_never_due() {
        let p = Policy {
            scheduled: false,
            ..Policy::default()
        };
        assert!(!is_due(datetime!(2026-11-21 10:00 UTC), &p, []));
    }

    #[test]
    fn daily_snapshots_settle_at_the_retention() {
        let p = policy(3, time!(00:00));
        let mut have: Vec<(String, OffsetDateTime)> = Vec::new();
        for day in 0..10 {
            let now = datetime!(2026-11-01 10:00 UTC) + Duration::days(day);
            for run in 0..2 {
                let now = now + Duration::hours(run);
                if is_due(now, &p, have.iter().map(|s| s.1)) {
                    have.push(snap(&format!("s{day}"), now));
                }
                let gone = expired(now, p.retention_days, &have);
                have.retain(|s| !gone.contains(&s.0));
            }
            assert_eq!(have.len(), (day as usize + 1).min(3), "day {day}: {have:?}");
        }
        let ids: Vec<&str> = have.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(ids, ["s7", "s8", "s9"]);
    }

    #[test]
    fn snapshots_older_than_the_retention_expire_oldest_first() {
        let now = datetime!(2026-11-21 10:00 UTC);
        let s = [
            snap("a", datetime!(2026-11-17 23:00 UTC)),
            snap("b", datetime!(2026-11-18 00:00 UTC)),
            snap("c", datetime!(2026-11-19 00:00 UTC)),
            snap("d", datetime!(2026-11-21 00:00 UTC)),
        ];
        assert_eq!(expired(now, 3, &s), ["a", "b"]);
        assert_eq!(expired(now, 1, &s), ["a", "b", "c"]);
        assert!(expired(now, 5, &s).is_empty());
    }

    #[test]
    fn the_newest_snapshot_is_never_pruned() {
        let now = datetime!(2026-11-21 10:00 UTC);
        let s = [
            snap("old", datetime!(2026-10-01 00:00 UTC)),
            snap("newest", datetime!(2026-10-02 00:00 UTC)),
        ];
        assert_eq!(expired(now, 1, &s), ["old"]);
        assert!(expired(now, 1, &s[1..]).is_empty());
    }

    #[test]
    fn a_policy_reads_recorded_attributes_with_fly_defaults() {
        let mut spec = SnapshotPolicySpec {
            retention_days: None,
            scheduled: None,
            snapshot_time: None,
        };
        assert_eq!(Policy::from_spec(&spec), Policy::default());
        spec.scheduled = Some(Agreed::One(false));
        spec.retention_days = Some(Agreed::One(2));
        spec.snapshot_time = Some("03:30".to_string());
        assert_eq!(
            Policy::from_spec(&spec),
            Policy {
                scheduled: false,
                retention_days: 2,
                at: time!(03:30),
            }
        );
    }

    #[test]
    fn times_of_day_are_two_digit_hours_and_minutes() {
        assert_eq!(parse_time_of_day("00:00"), Some(Time::MIDNIGHT));
        assert_eq!(parse_time_of_day("23:59"), Some(time!(23:59)));
        assert_eq!(parse_time_of_day("24:00"), None);
        assert_eq!(parse_time_of_day("3:30"), None);
        assert_eq!(parse_time_of_day("+3:30"), None);
    }
}
