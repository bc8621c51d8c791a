//! What `fly pg create` does between creating the app and creating the
//! first machine, so that postgres-flex can boot: a Flycast address, the
//! inter-node SSH certificate, the Consul URL, and one secrets call with the
//! passwords postgres-flex panics without, next to the declared secrets.
//! Each part is looked for first, so a re-run makes none of them twice.

use rand::distr::{Alphanumeric, SampleString};
use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};

use super::*;

/// The secrets postgres-flex reads at boot (its `cmd/start/main.go` panics
/// without the three passwords).
pub(super) const SU_PASSWORD: &str = "SU_PASSWORD";
pub(super) const REPL_PASSWORD: &str = "REPL_PASSWORD";
pub(super) const OPERATOR_PASSWORD: &str = "OPERATOR_PASSWORD";
pub(super) const SSH_KEY: &str = "SSH_KEY";
pub(super) const SSH_CERT: &str = "SSH_CERT";
pub(super) const FLY_CONSUL_URL: &str = "FLY_CONSUL_URL";
/// flyctl's name for a Consul URL given by hand (`--consul-url`).
const CONSUL_URL: &str = "CONSUL_URL";
pub(super) const FLY_RESTORED_FROM: &str = "FLY_RESTORED_FROM";

/// Generated passwords: longer than flyctl's 15 characters, same alphabet.
const PASSWORD_LEN: usize = 24;
/// The comment flyctl gives the key (`launcher.go`).
const SSH_KEY_COMMENT: &str = "postgres inter-machine ssh";

/// A new random password; never logged.
pub(super) fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LEN)
}

impl Performer<'_> {
    /// Everything postgres-flex needs before its first machine, each piece
    /// only when it is missing. Returns whether anything was changed.
    pub(super) async fn bootstrap(&self) -> Result<bool, ProviderError> {
        let gql = &self.p.graphql;
        let primary_region = self
            .step
            .after
            .as_ref()
            .and_then(|r| r.app()?.primary_region.clone());
        let live = self.list_secrets().await?;
        let has = |n: &str| live.secrets.iter().any(|s| s.name == n);
        let mut changed = false;

        // The org's node id, asked for only when something needs it.
        let mut org_id: Option<String> = None;
        macro_rules! org_id {
            () => {{
                if org_id.is_none() {
                    org_id = Some(gql.organization_id(&self.label, &self.p.org_slug).await?);
                }
                org_id.clone().unwrap_or_default()
            }};
        }

        // Flycast: `<app>.flycast` exists only with a private_v6 address.
        let ips = gql.ip_addresses(&self.label, self.app).await?;
        if !ips.iter().any(|ip| ip.kind == "private_v6") {
            let org = org_id!();
            // A mutation is sent once; when its answer is lost, look again
            // rather than allocate a second address.
            match gql
                .allocate_private_v6(&self.label, self.app, &org, primary_region.as_deref())
                .await
            {
                Ok(ip) => {
                    tracing::info!(address = %ip.address, "allocated a Flycast (private_v6) address");
                }
                Err(e) => {
                    let now = gql.ip_addresses(&self.label, self.app).await?;
                    if !now.iter().any(|ip| ip.kind == "private_v6") {
                        return Err(e);
                    }
                    tracing::info!("the Flycast address was allocated after all");
                }
            }
            changed = true;
        }

        let mut values: BTreeMap<String, Option<String>> = BTreeMap::new();

        // The inter-node SSH key and its certificate from the org's CA.
        if !has(SSH_CERT) || !has(SSH_KEY) {
            let org = org_id!();
            let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
                .map_err(|e| self.fail(format!("cannot make an SSH key: {e}")))?;
            key.set_comment(SSH_KEY_COMMENT);
            let public = key
                .public_key()
                .to_openssh()
                .map_err(|e| self.fail(format!("cannot encode the SSH key: {e}")))?;
            let private = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| self.fail(format!("cannot encode the SSH key: {e}")))?;
            let cert = gql
                .issue_certificate(&self.label, &org, self.app, &public)
                .await?;
            values.insert(SSH_KEY.to_string(), Some(private.to_string()));
            values.insert(SSH_CERT.to_string(), Some(cert));
            tracing::info!("issued the inter-node SSH certificate");
        }

        // postgres-flex keeps its cluster state in Consul.
        if !has(FLY_CONSUL_URL) && !has(CONSUL_URL) {
            let url = gql.enable_postgres_consul(&self.label, self.app).await?;
            values.insert(FLY_CONSUL_URL.to_string(), Some(url));
            tracing::info!("enabled Consul for the cluster");
        }

        // Declared secrets not yet in place go in the same call.
        let mut book = self.p.ledger(self.app).secrets()?;
        let (declared, digests) = self.declared_pending(&book, &live);
        values.extend(declared);

        // The passwords, declared or generated. The operator password is
        // OPERATOR_PASSWORD itself.
        let operator = self
            .ctx
            .operator_password
            .and_then(|n| Some((n, self.ctx.secrets.get(n)?)));
        for name in [SU_PASSWORD, REPL_PASSWORD, OPERATOR_PASSWORD] {
            if values.contains_key(name) || has(name) {
                continue;
            }
            let value = match operator {
                Some((_, v)) if name == OPERATOR_PASSWORD => v.to_string(),
                _ => generate_password(),
            };
            values.insert(name.to_string(), Some(value));
        }
        self.mirror_operator_password(&mut values);

        // The store URL and a restore source, in the same call.
        let backup_book = self.bootstrap_backup_values(&mut values, &has)?;

        if let Some(restore) = self.ctx.restore {
            if !has(FLY_RESTORED_FROM) {
                values.insert(
                    FLY_RESTORED_FROM.to_string(),
                    Some(restore.snapshot.to_string()),
                );
            }
        }

        if values.is_empty() {
            return Ok(changed);
        }
        let names: Vec<String> = values.keys().cloned().collect();
        let reply = self.post_secrets(values).await?;
        self.record_secrets(&mut book, &digests, &reply).await?;
        self.record_backup_book(backup_book, &reply)?;
        tracing::info!(count = names.len(), names = ?names, version = ?reply.version, "set the cluster's secrets in one call");
        Ok(true)
    }

    /// When the operator's password is being set under another name, set
    /// `OPERATOR_PASSWORD` to the same value in the same call: one value.
    pub(super) fn mirror_operator_password(&self, values: &mut BTreeMap<String, Option<String>>) {
        if let Some(name) = self.ctx.operator_password {
            if name != OPERATOR_PASSWORD {
                if let Some(Some(v)) = values.get(name).cloned() {
                    values.insert(OPERATOR_PASSWORD.to_string(), Some(v));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_passwords_are_long_random_and_alphanumeric() {
        let a = super::generate_password();
        let b = super::generate_password();
        assert_eq!(a.len(), super::PASSWORD_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
