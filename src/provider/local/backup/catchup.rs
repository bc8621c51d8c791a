//! Before a restore reads the store: when the source cluster runs under
//! this provider, everything it has written so far is archived first.
//!
//! A restore can only replay what the store holds. Right after writes, or
//! right after a failover, the newest WAL is still on its way: the new
//! leader archives its timeline's history file, the old timeline's
//! `.partial` segment and then its own first segment, a few seconds apart.
//! A restore that starts in between finds the history file, asks for the
//! new timeline's first segment, does not find it, and is answered with
//! the old timeline's `.partial` under the full segment's name
//! (barman-cloud-wal-restore 3.4 takes a `.partial` as a match); replay
//! then ends where the old timeline did and the rows written on the new one
//! are missing. So the source's leader switches to a new segment
//! (`pg_switch_wal()`) and the restore waits until no segment up to that one
//! waits in `archive_status` — `pg_stat_archiver.last_archived_wal` alone
//! cannot say it, as it may name a `.partial` or a history file. The same
//! wait covers a restore to a time: WAL past that time is then in the store.

use std::time::{Duration, Instant};

use super::super::app::AppCtx;
use super::super::db;
use crate::backup::StoreUrl;
use crate::provider::ProviderError;
use crate::snapshot::Snapshots;

/// How long a restore waits for the source's archiver beyond five
/// `archive_timeout`s.
const MARGIN: Duration = Duration::from_secs(120);

impl AppCtx<'_> {
    /// The app of this provider, other than this one, whose backup policy
    /// archives to `url`, with its `archive_timeout` in seconds.
    fn archiving_source(&self, url: &StoreUrl) -> Option<(String, u64)> {
        let want = url.to_string();
        self.provider
            .apps()
            .ok()?
            .into_iter()
            .filter(|a| a != self.name)
            .find_map(|a| {
                let ctx = AppCtx::new(self.provider, &a);
                let policy = ctx.backup_policy().ok()??;
                (policy.store == want).then(|| {
                    let timeout =
                        crate::config::units::parse_duration_s(&policy.spec.archive_timeout)
                            .unwrap_or(60);
                    (a.clone(), timeout)
                })
            })
    }

    /// Wait until the cluster archiving to `url`, when this provider runs
    /// it and it has a leader, has archived all the WAL it has written.
    /// Without such a cluster the store is taken as it is.
    ///
    /// # Errors
    /// The source's archiver did not get there in time (archiving failing):
    /// the restore would miss WAL the source holds.
    pub(super) fn wait_source_archived(&self, url: &StoreUrl) -> Result<(), ProviderError> {
        let Some((app, timeout)) = self.archiving_source(url) else {
            tracing::info!(store = %url, "no cluster of this provider archives there: restoring what the store holds");
            return Ok(());
        };
        let source = AppCtx::new(self.provider, &app);
        let Some(leader) = source
            .monitor_nodes()
            .ok()
            .and_then(|ns| ns.into_iter().find(|n| n.is_leader()))
        else {
            tracing::warn!(
                source = app,
                "the source cluster has no leader: restoring what the store holds"
            );
            return Ok(());
        };
        let what = format!("waiting for app {app} to archive its WAL to {url}");
        let deadline = Instant::now() + Duration::from_secs(timeout * 5) + MARGIN;
        db::block_on(async {
            let c = source
                .node_client(leader.port, Duration::from_secs(10))
                .await?;
            let segment: String = c
                .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
                .await
                .map_err(|e| db::query_err(&what, e))?
                .get(0);
            tracing::info!(
                source = app,
                segment,
                "waiting for the source to archive up to its newest segment"
            );
            loop {
                let waiting: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_ls_archive_statusdir() \
                         WHERE name LIKE '%.ready' AND left(name, -6) COLLATE \"C\" <= $1",
                        &[&segment],
                    )
                    .await
                    .map_err(|e| db::query_err(&what, e))?
                    .get(0);
                if waiting == 0 {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(ProviderError::failed(
                        what.as_str(),
                        format!(
                            "{waiting} WAL file(s) up to {segment} are still not archived; \
                             the restore would miss them (see `flyplan status` of {app} for archive failures)"
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }
}
