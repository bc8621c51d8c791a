//! `backup_policy.<app>`: `S3_ARCHIVE_CONFIG` set in one secrets call (in
//! the bootstrap call of a new cluster), the nodes updated to the new
//! secrets version when an existing cluster's value changed, the four
//! settings stored through the leader's admin API and the nodes restarted
//! to take them; turning backups off unsets the secret and leaves the store
//! alone (see [`crate::provider::fly::backup`]).

use super::*;
use crate::provider::fly::backup::{self, ARCHIVE_SECRET, RESTORE_SECRET};
use crate::provider::fly::exec::exec;
use crate::provider::fly::ledger::BackupLedger;

impl Performer<'_> {
    /// The backup policy this apply sets, if any.
    fn wanted_policy(&self) -> Option<&crate::model::BackupPolicySpec> {
        self.ctx
            .steps
            .iter()
            .filter(|s| s.kind == Kind::BackupPolicy && s.action != Action::Delete)
            .find_map(|s| match &s.after.as_ref()?.spec {
                Spec::BackupPolicy(p) => Some(p),
                _ => None,
            })
    }

    /// For the bootstrap secrets call of a new cluster: `S3_ARCHIVE_CONFIG`
    /// from the backup policy's secret and `S3_ARCHIVE_REMOTE_RESTORE_CONFIG`
    /// from `[postgres.restore]`, each when missing. Returns the backup
    /// ledger to record once the call is made (every node boots after it,
    /// so with the value).
    pub(super) fn bootstrap_backup_values(
        &self,
        values: &mut BTreeMap<String, Option<String>>,
        has: &dyn Fn(&str) -> bool,
    ) -> Result<Option<BackupLedger>, ProviderError> {
        let mut book = None;
        if let Some(policy) = self.wanted_policy() {
            let value = self.ctx.secrets.get(&policy.secret).ok_or_else(|| {
                self.fail(format!(
                    "no value for secret {} in this apply",
                    policy.secret
                ))
            })?;
            if !has(ARCHIVE_SECRET) || values.contains_key(ARCHIVE_SECRET) {
                values.insert(ARCHIVE_SECRET.to_string(), Some(value.to_string()));
                book = Some(BackupLedger {
                    secret: Some(policy.secret.clone()),
                    flyplan_digest: Some(secret_digest(self.app, &policy.secret, value)),
                    fly_digest: None,
                    deployed: true,
                });
            }
        }
        let restore = self
            .step
            .after
            .as_ref()
            .and_then(|r| r.app()?.restore_backup.clone());
        if let Some(input) = restore {
            let (name, query) = backup::restore_parts(&input);
            let url =
                self.ctx.secrets.get(name).ok_or_else(|| {
                    self.fail(format!("no value for secret {name} in this apply"))
                })?;
            if !has(RESTORE_SECRET) || values.contains_key(RESTORE_SECRET) {
                values.insert(RESTORE_SECRET.to_string(), Some(format!("{url}{query}")));
                tracing::info!(
                    source = name,
                    target = %query,
                    "the first node restores from the source cluster's store"
                );
            }
        }
        Ok(book)
    }

    /// When a secrets call of an existing cluster sets the backup policy's
    /// secret under another name, `S3_ARCHIVE_CONFIG` goes in the same
    /// call. Returns the backup ledger to record after it: the nodes have
    /// not booted with the value yet.
    pub(super) fn mirror_archive_secret(
        &self,
        values: &mut BTreeMap<String, Option<String>>,
    ) -> Option<BackupLedger> {
        let policy = self.wanted_policy()?;
        let value = values.get(&policy.secret).cloned().flatten()?;
        let digest = secret_digest(self.app, &policy.secret, &value);
        values.insert(ARCHIVE_SECRET.to_string(), Some(value));
        Some(BackupLedger {
            secret: Some(policy.secret.clone()),
            flyplan_digest: Some(digest),
            fly_digest: None,
            deployed: false,
        })
    }

    /// Record the backup ledger of a secrets call with Fly's digest.
    pub(super) fn record_backup_book(
        &self,
        book: Option<BackupLedger>,
        reply: &UpdateSecretsResponse,
    ) -> Result<(), ProviderError> {
        let Some(mut book) = book else {
            return Ok(());
        };
        book.fly_digest = reply
            .secrets
            .iter()
            .find(|s| s.name == ARCHIVE_SECRET)
            .map(|s| s.digest.clone());
        self.p.ledger(self.app).write_backup(&book)
    }

    pub(super) async fn backup_policy(&self) -> Result<Outcome, ProviderError> {
        if self.step.action == Action::Delete {
            return self.backups_off().await;
        }
        let want = match &self.after()?.spec {
            Spec::BackupPolicy(p) => p.clone(),
            _ => return Err(self.fail("the step's resource is not a backup policy")),
        };
        if let Some(why) = backup::refused(&want) {
            return Err(ProviderError::Unsupported {
                provider: "fly",
                what: format!("keep {why}"),
            });
        }
        let value = self
            .ctx
            .secrets
            .get(&want.secret)
            .ok_or_else(|| self.fail(format!("no value for secret {} in this apply", want.secret)))?
            .to_string();
        let digest = secret_digest(self.app, &want.secret, &value);
        let ledger = self.p.ledger(self.app);
        let mut book = ledger.backup()?;
        let live = self.list_secrets().await?;
        let fly = live
            .secrets
            .iter()
            .find(|s| s.name == ARCHIVE_SECRET)
            .map(|s| s.digest.clone());
        let mut did = false;

        let in_place = fly.is_some()
            && book.fly_digest == fly
            && book.flyplan_digest.as_deref() == Some(digest.as_str());
        if !in_place {
            // Declared as S3_ARCHIVE_CONFIG itself, the secret step of this
            // apply has set it already.
            let set_by_secret_step = want.secret == ARCHIVE_SECRET
                && ledger
                    .secrets()?
                    .secrets
                    .get(ARCHIVE_SECRET)
                    .is_some_and(|e| {
                        e.flyplan_digest == digest && fly.as_ref() == Some(&e.fly_digest)
                    });
            book.fly_digest = if set_by_secret_step {
                fly.clone()
            } else {
                let reply = self
                    .post_secrets(BTreeMap::from([(ARCHIVE_SECRET.to_string(), Some(value))]))
                    .await?;
                let mut secrets = ledger.secrets()?;
                if reply.version.is_some() {
                    secrets.version = reply.version;
                }
                let after = match reply.secrets.iter().find(|s| s.name == ARCHIVE_SECRET) {
                    Some(s) => s.digest.clone(),
                    None => self
                        .list_secrets()
                        .await?
                        .secrets
                        .into_iter()
                        .find(|s| s.name == ARCHIVE_SECRET)
                        .map(|s| s.digest)
                        .ok_or_else(|| {
                            self.fail(format!("{ARCHIVE_SECRET} missing after it was set"))
                        })?,
                };
                if let Some(e) = secrets.secrets.get_mut(ARCHIVE_SECRET) {
                    e.fly_digest = after.clone();
                    e.flyplan_digest = digest.clone();
                }
                ledger.write_secrets(&secrets)?;
                tracing::info!(secret = ARCHIVE_SECRET, from = %want.secret, version = ?reply.version, "set the store URL in one secrets call");
                Some(after)
            };
            book.secret = Some(want.secret.clone());
            book.flyplan_digest = Some(digest);
            book.deployed = false;
            ledger.write_backup(&book)?;
            did = true;
        }

        let mut restarted = false;
        if !book.deployed {
            self.redeploy_for_secrets().await?;
            book.deployed = true;
            ledger.write_backup(&book)?;
            restarted = true;
            did = true;
        }

        let (view, _) = self.read().await?;
        let leader = view
            .machines
            .iter()
            .find(|m| m.state == "started" && role_check(m) == Some("primary"))
            .ok_or_else(|| self.fail("no machine is the leader to set the backup settings on"))?
            .clone();
        let now = backup::read(self.client(), &self.label, self.app, &leader.id).await?;
        if !backup::settings_match(&now, &want) {
            exec(
                self.client(),
                &self.label,
                self.app,
                &leader.id,
                backup::update_command(&backup::wanted(&want)),
                None,
            )
            .await?;
            tracing::info!("stored the barman settings");
            did = true;
            // postgres-flex reads them at boot (`archive_timeout` goes into
            // postgresql.conf, the scheduler loads them once): its answer
            // says a restart is required.
            if !restarted {
                self.rolling_restart(&leader).await?;
            }
        }
        Ok(if did {
            changed(self.step.action)
        } else {
            Outcome::NotNeeded
        })
    }

    /// `[postgres.backup]` removed: `S3_ARCHIVE_CONFIG` unset in one call
    /// and the nodes updated so they boot without archiving
    /// (`pg.go:190-193`: `archive_mode = off`). flyctl has no command to
    /// turn backups off (`backup.go:35`: config, create, enable, list,
    /// restore); nothing in the store is touched.
    async fn backups_off(&self) -> Result<Outcome, ProviderError> {
        if self.ctx.secrets.get(ARCHIVE_SECRET).is_some() {
            return Err(self.fail(format!(
                "secret {ARCHIVE_SECRET} is still declared in [secrets]: postgres-flex archives \
                 whenever the app has it, so remove it from [secrets] too to turn backups off"
            )));
        }
        let ledger = self.p.ledger(self.app);
        let live = self.list_secrets().await?;
        let set = live.secrets.iter().any(|s| s.name == ARCHIVE_SECRET);
        // Unset already (by the delete of a secret declared under that
        // name), the nodes may still run with it.
        let nodes_have_it = ledger.backup()?.flyplan_digest.is_some();
        if !set && !nodes_have_it {
            return Ok(Outcome::NotNeeded);
        }
        if set {
            let reply = self
                .post_secrets(BTreeMap::from([(ARCHIVE_SECRET.to_string(), None)]))
                .await?;
            let mut secrets = ledger.secrets()?;
            secrets.secrets.remove(ARCHIVE_SECRET);
            if reply.version.is_some() {
                secrets.version = reply.version;
            }
            ledger.write_secrets(&secrets)?;
            tracing::info!(
                secret = ARCHIVE_SECRET,
                "unset the store URL; the store is left as it is"
            );
        }
        self.redeploy_for_secrets().await?;
        ledger.write_backup(&BackupLedger::default())?;
        Ok(Outcome::Deleted)
    }

    /// Update every started node, with its config unchanged, to the
    /// secrets version flyplan last wrote, as `fly secrets deploy` does:
    /// one at a time, the leader last after a switchover, each waited for
    /// until its checks pass.
    async fn redeploy_for_secrets(&self) -> Result<(), ProviderError> {
        let (view, _) = self.read().await?;
        let mut order: Vec<&Machine> = view
            .machines
            .iter()
            .filter(|m| m.state == "started")
            .collect();
        order.sort_by_key(|m| role_check(m) == Some("primary"));
        for m in order {
            let leader = role_check(m) == Some("primary");
            let (nonce, held) = self.lease_for_change(m, leader, None).await?;
            let result = async {
                let updated = self.post_update(m, m.config.clone(), &nonce).await?;
                tracing::info!(machine = %m.id, "updated to the new secrets; waiting for it");
                self.wait_started(&m.id, &updated.instance_id, Some(&nonce))
                    .await?;
                self.wait_checks(&m.id, false).await
            }
            .await;
            self.release_lease(&m.id, &nonce).await;
            self.release_all(&held).await;
            result?;
        }
        Ok(())
    }
}
