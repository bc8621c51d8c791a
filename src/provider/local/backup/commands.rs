//! `flyplan backups list|create|run|verify` on the local provider: the
//! app's apply lock and the backup lock held around each.

use super::super::app::AppCtx;
use super::super::state::FileLock;
use super::super::LocalProvider;
use crate::backup::{self, barman};
use crate::provider::ProviderError;

impl LocalProvider {
    /// The app's context with its apply lock and the backup lock held, so
    /// runs of one app are serialised and never race an apply.
    fn hold_for_backups<'a>(
        &'a self,
        app: &'a str,
    ) -> Result<(AppCtx<'a>, Box<dyn crate::provider::LockGuard>, FileLock), ProviderError> {
        let ctx = self.app(app);
        if !ctx.exists() {
            return Err(ProviderError::failed(
                format!("app {app}"),
                "does not exist (apply it first)",
            ));
        }
        let apply = crate::provider::Provider::lock(self, app)?;
        ctx.user().mkdir(&ctx.backup_dir(), 0o700)?;
        let lock = FileLock::acquire(&ctx.backup_dir().join(".lock"))?;
        Ok((ctx, apply, lock))
    }
}

impl backup::Backups for LocalProvider {
    fn list(&self, app: &str) -> Result<Vec<barman::BackupInfo>, ProviderError> {
        self.app(app).list_backups()
    }

    fn create(&self, app: &str) -> Result<(String, String), ProviderError> {
        let (ctx, _apply, _lock) = self.hold_for_backups(app)?;
        ctx.create_backup()
    }

    fn run(
        &self,
        app: &str,
        now: time::OffsetDateTime,
    ) -> Result<backup::RunReport, ProviderError> {
        let mut report = backup::RunReport {
            app: app.to_string(),
            taken: None,
            not_run: None,
        };
        // Without a policy there is nothing to run, and nothing to lock.
        if self.app(app).backup_policy()?.is_none() {
            return Ok(report);
        }
        let (ctx, _apply, _lock) = self.hold_for_backups(app)?;
        let Some(policy) = ctx.backup_policy()? else {
            return Ok(report);
        };
        let every = crate::config::units::parse_duration_s(&policy.spec.full_backup_frequency)
            .unwrap_or(86400);
        let newest = ctx
            .list_backups()?
            .iter()
            .filter(|b| b.status == "DONE")
            .filter_map(|b| b.end_time.as_deref().and_then(super::base::barman_time_utc))
            .max();
        let due = newest.is_none_or(|t| {
            now - t >= time::Duration::seconds(i64::try_from(every).unwrap_or(i64::MAX))
        });
        if due {
            report.taken = Some(ctx.create_backup()?.0);
        }
        Ok(report)
    }

    fn status(&self, app: &str) -> Result<Option<backup::BackupStatus>, ProviderError> {
        self.app(app).backup_status()
    }

    fn verify(&self, app: &str, id: &str) -> Result<backup::Verified, ProviderError> {
        let (ctx, _apply, _lock) = self.hold_for_backups(app)?;
        ctx.verify_backup(id)
    }
}
