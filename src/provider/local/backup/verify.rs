//! `flyplan backups verify ID`: a base backup restored into a scratch
//! directory and checked with amcheck.
//!
//! `pg_verifybackup` cannot check a barman-cloud backup: barman-cloud
//! stores tar files without a `backup_manifest` of its own (a
//! `backup_manifest` found in the data directory is the one `pg_basebackup`
//! left when the node it was taken from was cloned, and describes that
//! copy). So the backup is fetched with `barman-cloud-restore`, replayed to
//! its consistent end (`recovery_target = immediate`, with WAL from the
//! store) by a temporary server that never archives, promoted, and every
//! btree index of every database is checked with amcheck's
//! `bt_index_check`. The scratch directory goes when the check ends.

use std::time::Duration;

use super::super::app::AppCtx;
use super::super::db;
use super::super::state;
use crate::backup::{self, barman, Verified};
use crate::provider::ProviderError;

impl AppCtx<'_> {
    /// Restore backup `id` of the policy's store into a scratch directory,
    /// replay it to consistency and check every btree index with amcheck.
    pub(super) fn verify_backup(&self, id: &str) -> Result<Verified, ProviderError> {
        let (_, url) = self.backup_store()?;
        if !self
            .list_backups()?
            .iter()
            .any(|b| b.backup_id == id && b.status == "DONE")
        {
            return Err(ProviderError::failed(
                format!("backup {id}"),
                format!("no completed backup {id} in {url}"),
            ));
        }
        let scratch = self.backup_dir().join(format!("verify-{id}"));
        state::remove_dir(&scratch)?;
        self.user().mkdir(&scratch, 0o700)?;
        let result = self.verify_in(&scratch, &url, id);
        let _ = state::remove_dir(&scratch);
        result
    }

    fn verify_in(
        &self,
        pgdata: &std::path::Path,
        url: &backup::StoreUrl,
        id: &str,
    ) -> Result<Verified, ProviderError> {
        let creds = self.backup_credentials();
        self.fetch_backup(url, backup::PROFILE, &creds, id, pgdata)?;
        let restore_command =
            barman::wal_restore_command(url, backup::PROFILE, &creds.display().to_string());
        let settings = [
            format!("restore_command={restore_command}"),
            "recovery_target=immediate".to_string(),
            // A scratch server never archives, whatever its files say.
            "archive_mode=off".to_string(),
            "archive_command=".to_string(),
            "synchronous_standby_names=".to_string(),
        ];
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| ProviderError::io("choosing a port for the check", e))?;
        let what = format!("replaying backup {id} for its check");
        let server = self.start_replay(&what, pgdata, port, &format!("verify-{id}"), &settings)?;
        let checked = self.amcheck(port);
        let stopped = server.stop(self);
        let (databases, indexes_checked) = checked?;
        stopped?;
        Ok(Verified {
            backup_id: id.to_string(),
            method: "amcheck".to_string(),
            databases,
            indexes_checked,
        })
    }

    /// `bt_index_check` on every btree index of every database.
    fn amcheck(&self, port: u16) -> Result<(Vec<String>, i64), ProviderError> {
        let user = self.user().name.clone();
        let sock = self.paths.sock();
        let timeout = Duration::from_secs(10);
        db::block_on(async {
            let c = db::connect(&sock, port, &user, "postgres", timeout).await?;
            let dbs: Vec<String> = c
                .query(
                    "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname",
                    &[],
                )
                .await
                .map_err(|e| db::query_err("listing databases", e))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut total = 0i64;
            for name in &dbs {
                let c = db::connect(&sock, port, &user, name, timeout).await?;
                let what = format!("amcheck of database {name}");
                c.batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
                    .await
                    .map_err(|e| db::query_err(&what, e))?;
                let row = c
                    .query_one(
                        "SELECT count(bt_index_check(c.oid))::bigint \
                         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                         JOIN pg_am a ON a.oid = c.relam \
                         WHERE a.amname = 'btree' AND c.relpersistence <> 't' \
                           AND i.indisready AND i.indisvalid",
                        &[],
                    )
                    .await
                    .map_err(|e| db::query_err(&what, e))?;
                total += row.get::<_, i64>(0);
            }
            Ok((dbs, total))
        })
    }
}
