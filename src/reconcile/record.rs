//! What the reconcile loop did, per commit, kept in `status.json` so it
//! survives restarts: attempted and applied revision, result, reason, plan
//! summary, attempts and the next retry. It never holds secret values.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How many commits the record keeps, newest first.
pub const HISTORY: usize = 20;

/// The result of one reconcile of one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultKind {
    /// Changes were applied (or there were none left after a heal).
    Applied,
    /// Live state already matched the commit.
    NoChanges,
    /// Validation, planning or apply failed; nothing more was done.
    Failed,
    /// Planned only (`--plan-only`, or the loop is suspended).
    Planned,
}

impl ResultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultKind::Applied => "applied",
            ResultKind::NoChanges => "no-changes",
            ResultKind::Failed => "failed",
            ResultKind::Planned => "planned",
        }
    }
    /// The Prometheus label value.
    pub fn label(self) -> &'static str {
        match self {
            ResultKind::NoChanges => "no_changes",
            other => other.as_str(),
        }
    }
    pub fn is_success(self) -> bool {
        self != ResultKind::Failed
    }
}

/// The plan of one fly.toml at one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPlan {
    /// Path of the fly.toml inside the repository.
    pub file: String,
    pub app: String,
    /// `Plan: X to add, ...` or `No changes. ...`.
    pub summary: String,
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    /// What the daily snapshot schedule did after the apply, on a provider
    /// that keeps snapshots itself (`took <id>`, `no snapshot due`,
    /// `failed: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<String>,
}

/// Everything known about one commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub revision: String,
    /// First line of the commit message.
    pub message: String,
    pub result: ResultKind,
    /// Why it failed (a located fly.toml error, the apply error) or was
    /// only planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub plans: Vec<AppPlan>,
    /// Duration of the last reconcile of this commit.
    pub duration_ms: u64,
    /// When the last reconcile of this commit finished (RFC 3339).
    pub time: String,
    /// When the commit was first seen (RFC 3339).
    pub first_seen: String,
    /// Reconciles of this commit so far.
    pub attempts: u32,
    /// Failures of this commit in a row (the backoff exponent).
    #[serde(default)]
    pub failures: u32,
    /// When a failed commit is tried again (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<String>,
    /// Interval re-plans of this commit that found drift.
    #[serde(default)]
    pub drift_found: u64,
}

/// Counters since the record was created; `/metrics` shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub applied: u64,
    pub no_changes: u64,
    pub failed: u64,
    pub planned: u64,
    pub drift_detected: u64,
    pub apply_seconds_sum: f64,
    pub apply_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply_seconds: Option<f64>,
}

impl Counters {
    pub fn count(&mut self, result: ResultKind) {
        match result {
            ResultKind::Applied => self.applied += 1,
            ResultKind::NoChanges => self.no_changes += 1,
            ResultKind::Failed => self.failed += 1,
            ResultKind::Planned => self.planned += 1,
        }
    }
    fn get(&self, result: ResultKind) -> u64 {
        match result {
            ResultKind::Applied => self.applied,
            ResultKind::NoChanges => self.no_changes,
            ResultKind::Failed => self.failed,
            ResultKind::Planned => self.planned,
        }
    }
}

/// The whole record of one watched repository, branch and path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchState {
    pub repo: String,
    pub branch: String,
    pub path: String,
    pub suspended: bool,
    /// The last revision whose apply succeeded (or had nothing to do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_unix: Option<i64>,
    /// The last fetch error, cleared by a good fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_error: Option<String>,
    /// The address of the webhook and metrics server, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Newest first; the first is the branch head last seen.
    #[serde(default)]
    pub commits: Vec<CommitRecord>,
    #[serde(default)]
    pub counters: Counters,
}

impl WatchState {
    /// The record of the branch head last seen.
    pub fn current(&self) -> Option<&CommitRecord> {
        self.commits.first()
    }
    pub fn current_mut(&mut self) -> Option<&mut CommitRecord> {
        self.commits.first_mut()
    }
    /// Make `record` the current one, replacing an older record of the same
    /// revision and keeping at most [`HISTORY`] records.
    pub fn push(&mut self, record: CommitRecord) {
        self.commits.retain(|c| c.revision != record.revision);
        self.commits.insert(0, record);
        self.commits.truncate(HISTORY);
    }

    /// Read `path`; a missing file is an empty record.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(path: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write to `path` atomically (a temporary file renamed over it), so a
    /// reader or a crash never sees half a record.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).expect("status serialises") + "\n";
        crate::fsutil::write_atomic(path, text.as_bytes(), None)
    }

    /// The record for people (`flyplan watch --status`).
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Watching {} (branch {}, {})",
            self.repo, self.branch, self.path
        );
        let _ = writeln!(
            s,
            "Suspended: {}",
            if self.suspended { "yes" } else { "no" }
        );
        if let Some(listen) = &self.listen {
            let _ = writeln!(s, "Listening: http://{listen}/hook");
        }
        match &self.applied_revision {
            Some(rev) => {
                let _ = writeln!(
                    s,
                    "Applied revision: {} (last success {})",
                    short(rev),
                    self.last_success.as_deref().unwrap_or("?")
                );
            }
            None => {
                let _ = writeln!(s, "Applied revision: none yet");
            }
        }
        if let Some(e) = &self.fetch_error {
            let _ = writeln!(s, "Fetch error: {e}");
        }
        if let Some(c) = self.current() {
            let _ = writeln!(
                s,
                "\nLast attempted: {} {:?}\n  result {} at {} in {:.1}s, attempt {}",
                short(&c.revision),
                c.message,
                c.result.as_str(),
                c.time,
                c.duration_ms as f64 / 1000.0,
                c.attempts
            );
            for p in &c.plans {
                let _ = writeln!(s, "  {} ({}): {}", p.file, p.app, p.summary);
                if let Some(snap) = &p.snapshots {
                    let _ = writeln!(s, "    snapshots: {snap}");
                }
            }
            if c.drift_found > 0 {
                let _ = writeln!(s, "  drift found and healed {} time(s)", c.drift_found);
            }
            if let Some(r) = &c.reason {
                let _ = writeln!(s, "  reason:");
                for line in r.lines() {
                    let _ = writeln!(s, "    {line}");
                }
            }
            if let Some(t) = &c.next_retry {
                let _ = writeln!(s, "  next retry: {t}");
            }
        }
        if self.commits.len() > 1 {
            let _ = writeln!(s, "\nEarlier commits:");
            for c in &self.commits[1..] {
                let _ = writeln!(
                    s,
                    "  {} {:<10} {} {:?}",
                    short(&c.revision),
                    c.result.as_str(),
                    c.time,
                    c.message
                );
            }
        }
        let k = &self.counters;
        let _ = writeln!(
            s,
            "\nReconciles: {} applied, {} no-changes, {} failed, {} planned; drift detected {} time(s).",
            k.applied, k.no_changes, k.failed, k.planned, k.drift_detected
        );
        s
    }

    /// The Prometheus text exposition of the counters.
    pub fn metrics(&self) -> String {
        let k = &self.counters;
        let mut s = String::new();
        s.push_str(
            "# HELP flyplan_reconciles_total Reconciles of the watched branch, by result.\n",
        );
        s.push_str("# TYPE flyplan_reconciles_total counter\n");
        for r in [
            ResultKind::Applied,
            ResultKind::NoChanges,
            ResultKind::Failed,
            ResultKind::Planned,
        ] {
            let _ = writeln!(
                s,
                "flyplan_reconciles_total{{result=\"{}\"}} {}",
                r.label(),
                k.get(r)
            );
        }
        s.push_str("# HELP flyplan_last_success_timestamp_seconds When a reconcile last succeeded (Unix time).\n");
        s.push_str("# TYPE flyplan_last_success_timestamp_seconds gauge\n");
        let _ = writeln!(
            s,
            "flyplan_last_success_timestamp_seconds {}",
            self.last_success_unix.unwrap_or(0)
        );
        s.push_str("# HELP flyplan_drift_detected_total Re-plans of an applied commit that found the live state changed.\n");
        s.push_str("# TYPE flyplan_drift_detected_total counter\n");
        let _ = writeln!(s, "flyplan_drift_detected_total {}", k.drift_detected);
        s.push_str("# HELP flyplan_apply_duration_seconds Time spent applying plans.\n");
        s.push_str("# TYPE flyplan_apply_duration_seconds summary\n");
        let _ = writeln!(
            s,
            "flyplan_apply_duration_seconds_sum {}",
            k.apply_seconds_sum
        );
        let _ = writeln!(s, "flyplan_apply_duration_seconds_count {}", k.apply_count);
        s.push_str(
            "# HELP flyplan_suspended 1 while the loop is suspended (plans, does not apply).\n",
        );
        s.push_str("# TYPE flyplan_suspended gauge\n");
        let _ = writeln!(s, "flyplan_suspended {}", u8::from(self.suspended));
        s
    }
}

/// The first 12 characters of a revision.
pub fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_every_result_label() {
        let mut st = WatchState::default();
        st.counters.count(ResultKind::Applied);
        st.counters.count(ResultKind::NoChanges);
        let m = st.metrics();
        assert!(m.contains("flyplan_reconciles_total{result=\"applied\"} 1\n"));
        assert!(m.contains("flyplan_reconciles_total{result=\"no_changes\"} 1\n"));
        assert!(m.contains("flyplan_reconciles_total{result=\"failed\"} 0\n"));
        assert!(m.contains("flyplan_suspended 0\n"));
    }

    #[test]
    fn a_newer_record_of_the_same_revision_replaces_the_older() {
        let mut st = WatchState::default();
        let rec = |rev: &str, result| CommitRecord {
            revision: rev.into(),
            message: String::new(),
            result,
            reason: None,
            plans: vec![],
            duration_ms: 0,
            time: String::new(),
            first_seen: String::new(),
            attempts: 1,
            failures: 0,
            next_retry: None,
            drift_found: 0,
        };
        st.push(rec("a", ResultKind::Failed));
        st.push(rec("b", ResultKind::Failed));
        st.push(rec("a", ResultKind::Applied));
        let revs: Vec<_> = st.commits.iter().map(|c| c.revision.as_str()).collect();
        assert_eq!(revs, ["a", "b"]);
        assert_eq!(st.current().unwrap().result, ResultKind::Applied);
    }
}
