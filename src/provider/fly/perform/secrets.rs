//! The cluster app's secrets, set and unset in one call, with the ledger
//! that lets a later observe tell flyplan's values from others.

use super::*;

impl Performer<'_> {
    pub(super) fn secret_name(&self) -> Result<&str, ProviderError> {
        self.step
            .address
            .as_str()
            .strip_prefix("secret.")
            .ok_or_else(|| self.fail("not a secret address"))
    }

    /// The app's secrets, at least at the version flyplan last wrote.
    pub(super) async fn list_secrets(&self) -> Result<ListSecretsResponse, ProviderError> {
        let mut call =
            self.client()
                .request(&self.label, Method::GET, &["apps", self.app, "secrets"]);
        if let Some(v) = self.p.ledger(self.app).secrets()?.version {
            call = call.query("version", v.to_string());
        }
        call.send().await
    }

    pub(super) async fn post_secrets(
        &self,
        values: BTreeMap<String, Option<String>>,
    ) -> Result<UpdateSecretsResponse, ProviderError> {
        self.client()
            .request(&self.label, Method::POST, &["apps", self.app, "secrets"])
            .json(&UpdateSecretsRequest { values })
            .send()
            .await
    }

    /// Secrets are set in one call before any machine: the first secret step
    /// of an apply sets every value of this apply that is not yet in place;
    /// the later ones find theirs in place and return `NotNeeded`.
    pub(super) async fn secret(&self) -> Result<Outcome, ProviderError> {
        let name = self.secret_name()?;
        let ledger = self.p.ledger(self.app);
        let mut book = ledger.secrets()?;
        let live = self.list_secrets().await?;
        let fly_digest = |n: &str| {
            live.secrets
                .iter()
                .find(|s| s.name == n)
                .map(|s| s.digest.clone())
        };

        if self.step.action == Action::Delete {
            if fly_digest(name).is_none() {
                if book.secrets.remove(name).is_some() {
                    ledger.write_secrets(&book)?;
                }
                return Ok(Outcome::NotNeeded);
            }
            let mut values = BTreeMap::new();
            values.insert(name.to_string(), None);
            let reply = self.post_secrets(values).await?;
            book.secrets.remove(name);
            if reply.version.is_some() {
                book.version = reply.version;
            }
            ledger.write_secrets(&book)?;
            tracing::info!(secret = name, "unset secret");
            return Ok(Outcome::Deleted);
        }

        if self.ctx.secrets.get(name).is_none() {
            return Err(self.fail(format!("no value for secret {name} in this apply")));
        }
        let (mut pending, digests) = self.declared_pending(&book, &live);
        if !pending.contains_key(name) {
            return Ok(Outcome::NotNeeded);
        }
        self.mirror_operator_password(&mut pending);
        let backup_book = self.mirror_archive_secret(&mut pending);
        let names: Vec<String> = pending.keys().cloned().collect();
        let reply = self.post_secrets(pending).await?;
        self.record_secrets(&mut book, &digests, &reply).await?;
        self.record_backup_book(backup_book, &reply)?;
        tracing::info!(count = names.len(), names = ?names, version = ?reply.version, "set secrets in one call");
        Ok(changed(self.step.action))
    }

    /// The declared secrets of this apply whose value is not in place, and
    /// flyplan's digests of them.
    pub(super) fn declared_pending(
        &self,
        book: &super::super::ledger::SecretsLedger,
        live: &ListSecretsResponse,
    ) -> (BTreeMap<String, Option<String>>, BTreeMap<String, String>) {
        let fly_digest = |n: &str| {
            live.secrets
                .iter()
                .find(|s| s.name == n)
                .map(|s| s.digest.clone())
        };
        let in_place = |n: &str, digest: &str| {
            book.secrets.get(n).is_some_and(|e| {
                e.flyplan_digest == digest && fly_digest(n).as_deref() == Some(&e.fly_digest)
            })
        };
        let mut pending: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut digests: BTreeMap<String, String> = BTreeMap::new();
        for n in self.ctx.secrets.names() {
            let value = self.ctx.secrets.get(n).unwrap_or_default();
            let digest = secret_digest(self.app, n, value);
            if !in_place(n, &digest) {
                pending.insert(n.to_string(), Some(value.to_string()));
                digests.insert(n.to_string(), digest);
            }
        }
        (pending, digests)
    }

    /// Record in the ledger the declared secrets (those in `digests`) a
    /// secrets call just set, with the digests Fly gives them, and the
    /// version the call made.
    pub(super) async fn record_secrets(
        &self,
        book: &mut super::super::ledger::SecretsLedger,
        digests: &BTreeMap<String, String>,
        reply: &UpdateSecretsResponse,
    ) -> Result<(), ProviderError> {
        let after: Vec<crate::provider::fly::api::AppSecret> = if digests
            .keys()
            .all(|n| reply.secrets.iter().any(|s| &s.name == n))
        {
            reply.secrets.clone()
        } else {
            self.list_secrets().await?.secrets
        };
        for (n, digest) in digests {
            let fly = after
                .iter()
                .find(|s| &s.name == n)
                .map(|s| s.digest.clone())
                .ok_or_else(|| self.fail(format!("secret {n} missing after it was set")))?;
            book.secrets.insert(
                n.clone(),
                SecretEntry {
                    fly_digest: fly,
                    flyplan_digest: digest.clone(),
                },
            );
        }
        if reply.version.is_some() {
            book.version = reply.version;
        }
        self.p.ledger(self.app).write_secrets(book)
    }
}
