//! Base backups with `barman-cloud-backup` from a healthy standby (else the
//! leader), their list with `barman-cloud-backup-list`, retention with
//! `barman-cloud-backup-delete`, and what `status` shows of them.

use std::time::Duration;

use super::super::app::AppCtx;
use super::super::db;
use crate::backup::{self, barman, BackupStatus, StoreUrl};
use crate::provider::ProviderError;

/// Longest base backup accepted.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(4 * 3600);
/// Longest store round trip accepted for a list, a check or a delete.
const STORE_TIMEOUT: Duration = Duration::from_secs(120);

impl AppCtx<'_> {
    /// Whether the store answers (a list of its backups).
    pub(super) fn check_store(&self, url: &StoreUrl) -> Result<(), ProviderError> {
        self.run_barman(
            &format!("reaching the object store {url}"),
            "barman-cloud-backup-list",
            &barman::list_args(url, backup::PROFILE),
            STORE_TIMEOUT,
        )
        .map(|_| ())
    }

    /// The backups in the store of the applied policy.
    pub fn list_backups(&self) -> Result<Vec<barman::BackupInfo>, ProviderError> {
        let (_, url) = self.backup_store()?;
        let out = self.run_barman(
            "listing backups",
            "barman-cloud-backup-list",
            &barman::list_args(&url, backup::PROFILE),
            STORE_TIMEOUT,
        )?;
        barman::parse_list(&out)
            .map_err(|e| ProviderError::failed("listing backups", format!("unreadable list: {e}")))
    }

    /// Take a base backup now from a healthy standby (else the leader),
    /// then apply retention. Returns the new backup's id and the node.
    pub fn create_backup(&self) -> Result<(String, String), ProviderError> {
        let (policy, url) = self.backup_store()?;
        let (source, _) = self.snapshot_source()?;
        let before: Vec<String> = self
            .list_backups()?
            .into_iter()
            .map(|b| b.backup_id)
            .collect();
        let user = self.user().name.clone();
        let sock = self.paths.sock().display().to_string();
        self.run_barman(
            &format!("base backup of node {}", source.node),
            "barman-cloud-backup",
            &barman::backup_args(&url, backup::PROFILE, &sock, source.port, &user),
            BACKUP_TIMEOUT,
        )?;
        let id = self
            .list_backups()?
            .into_iter()
            .map(|b| b.backup_id)
            .find(|id| !before.contains(id))
            .unwrap_or_default();
        tracing::info!(app = self.name, node = %source.node, backup = %id, "base backup taken");
        self.apply_retention(
            &url,
            &policy.spec.recovery_window,
            policy.spec.minimum_redundancy,
        )?;
        Ok((id, source.node))
    }

    /// Retention: `barman-cloud-backup-delete --retention-policy "RECOVERY
    /// WINDOW OF ..."` when what it removes leaves `minimum_redundancy`
    /// backups, else only the oldest obsolete backups by id.
    fn apply_retention(
        &self,
        url: &StoreUrl,
        window: &str,
        minimum_redundancy: u64,
    ) -> Result<(), ProviderError> {
        let done: Vec<(String, time::OffsetDateTime)> = self
            .list_backups()?
            .into_iter()
            .filter(|b| b.status == "DONE")
            .filter_map(|b| {
                Some((
                    b.backup_id.clone(),
                    barman_time_utc(b.end_time.as_deref()?)?,
                ))
            })
            .collect();
        let now = time::OffsetDateTime::now_utc();
        let all = barman::obsolete(&done, now, window_length(window), 0);
        if all.is_empty() {
            return Ok(());
        }
        let allowed = barman::obsolete(&done, now, window_length(window), minimum_redundancy);
        if allowed.len() == all.len() {
            let policy = backup::retention_policy(window);
            return self
                .run_barman(
                    "applying retention",
                    "barman-cloud-backup-delete",
                    &barman::delete_policy_args(url, backup::PROFILE, &policy),
                    STORE_TIMEOUT,
                )
                .map(|_| ());
        }
        for id in allowed {
            self.run_barman(
                &format!("deleting obsolete backup {id}"),
                "barman-cloud-backup-delete",
                &barman::delete_id_args(url, backup::PROFILE, &id),
                STORE_TIMEOUT,
            )?;
        }
        Ok(())
    }

    /// What `status` shows; `None` without a policy.
    pub fn backup_status(&self) -> Result<Option<BackupStatus>, ProviderError> {
        let Some(policy) = self.backup_policy()? else {
            return Ok(None);
        };
        let mut st = BackupStatus {
            store: policy.store.clone(),
            ..BackupStatus::default()
        };
        let leader = self
            .monitor_nodes()
            .ok()
            .and_then(|ns| ns.into_iter().find(|n| n.is_leader()));
        if let Some(leader) = leader {
            let row = db::block_on(async {
                let c = self
                    .node_client(leader.port, Duration::from_secs(10))
                    .await?;
                c.query_one(
                    "SELECT last_archived_wal, \
                            to_char(last_archived_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                            extract(epoch FROM now() - last_archived_time)::bigint, \
                            archived_count, failed_count, last_failed_wal, \
                            to_char(last_failed_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                            CASE WHEN last_failed_time > coalesce(last_archived_time, '-infinity') \
                                 THEN extract(epoch FROM now() - greatest(last_archived_time, stats_reset))::bigint END \
                     FROM pg_stat_archiver",
                    &[],
                )
                .await
                .map_err(|e| db::query_err("reading pg_stat_archiver", e))
            });
            if let Ok(r) = row {
                st.last_archived_wal = r.get(0);
                st.last_archived_time = r.get(1);
                st.last_archived_age_s = r.get(2);
                st.archived_count = r.get(3);
                st.failed_count = r.get(4);
                st.last_failed_wal = r.get(5);
                st.last_failed_time = r.get(6);
                st.failing_for_s = r.get(7);
            }
        }
        let timeout =
            crate::config::units::parse_duration_s(&policy.spec.archive_timeout).unwrap_or(60);
        if let Some(f) = st.failing_for_s {
            if f > i64::try_from(timeout * 5).unwrap_or(i64::MAX) {
                st.warning = Some(format!(
                    "WAL archiving has been failing for {f}s (archive_timeout x 5 = {}s); last failed WAL {}",
                    timeout * 5,
                    st.last_failed_wal.as_deref().unwrap_or("?")
                ));
            }
        }
        if let Ok(list) = self.list_backups() {
            let done: Vec<_> = list.iter().filter(|b| b.status == "DONE").collect();
            st.backups = done.len();
            if let Some(last) = done.last() {
                st.last_backup_id = Some(last.backup_id.clone());
                st.last_backup_time = last.end_time.as_deref().and_then(barman_time);
                st.last_backup_age_s = st.last_backup_time.as_deref().and_then(age_s);
            }
            st.recoverable_from = done
                .first()
                .and_then(|b| b.begin_time.as_deref())
                .and_then(barman_time);
            if st.recoverable_from.is_some() {
                st.recoverable_to = st
                    .last_archived_time
                    .clone()
                    .or_else(|| st.last_backup_time.clone());
            }
        }
        Ok(Some(st))
    }
}

/// barman's `Mon Nov 30 10:15:00 2026` (UTC).
pub(super) fn barman_time_utc(text: &str) -> Option<time::OffsetDateTime> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short] [month repr:short] [day padding:none] [hour]:[minute]:[second] [year]"
    );
    let cleaned = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(
        time::PrimitiveDateTime::parse(&cleaned, fmt)
            .ok()?
            .assume_utc(),
    )
}

/// barman's time as RFC 3339.
fn barman_time(text: &str) -> Option<String> {
    barman_time_utc(text)?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A recovery window (`7d`, `2w`, `1m` = 31 days at most) as a duration.
fn window_length(window: &str) -> time::Duration {
    let (n, unit) = window.split_at(window.len().saturating_sub(1));
    let n: i64 = n.parse().unwrap_or(7);
    match unit {
        "w" => time::Duration::weeks(n),
        "m" => time::Duration::days(31 * n),
        _ => time::Duration::days(n),
    }
}

fn age_s(rfc3339: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    Some((time::OffsetDateTime::now_utc() - t).whole_seconds())
}

#[cfg(test)]
mod tests {
    #[test]
    fn barman_times_read_as_utc() {
        assert_eq!(
            super::barman_time("Mon Nov 30 10:15:00 2026").as_deref(),
            Some("2026-11-30T10:15:00Z")
        );
        assert_eq!(
            super::barman_time("Tue Dec  1 01:02:03 2026").as_deref(),
            Some("2026-12-01T01:02:03Z")
        );
    }
}
