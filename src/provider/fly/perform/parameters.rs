//! `[postgres.parameters]` through postgres-flex's settings API, as `fly pg
//! config update` sets them (flyctl
//! `internal/command/postgres/config_update.go`): the value stored through
//! the leader, applied on every started node, and, for a setting that only
//! a restart takes, the nodes restarted one at a time, the leader last
//! after a switchover (`restart_node`).

use super::*;
use crate::pgsettings::{self, Apply};
use crate::provider::fly::settings;

impl Performer<'_> {
    pub(super) async fn parameter(&self) -> Result<Outcome, ProviderError> {
        // Settings fly.toml stops naming are left as they are, as on the
        // local provider.
        if self.step.action == Action::Delete {
            return Ok(Outcome::NotNeeded);
        }
        let name = self.step.address.name();
        let setting = pgsettings::lookup(name)
            .ok_or_else(|| self.fail(format!("`{name}` is not a PostgreSQL setting")))?;
        let want = match &self.after()?.spec {
            Spec::Parameter(p) => p.value.one().cloned(),
            _ => None,
        }
        .ok_or_else(|| self.fail("no value in the desired setting"))?;
        let (view, _) = self.read().await?;
        let leader = view
            .machines
            .iter()
            .find(|m| m.state == "started" && role_check(m) == Some("primary"))
            .ok_or_else(|| self.fail(format!("no machine is the leader to set {name} on")))?
            .clone();
        let client = self.client();
        let now = settings::read_settings(client, &self.label, self.app, &leader.id, &[name])
            .await?
            .get(setting.name)
            .map(|raw| pgsettings::canonical_live(setting, raw));
        if now.as_deref() == Some(want.as_str()) {
            return Ok(Outcome::NotNeeded);
        }
        let values = BTreeMap::from([(setting.name, settings::raw_value(&want))]);
        settings::set_settings(
            client,
            &self.label,
            self.app,
            &leader.id,
            &view.machines,
            &values,
        )
        .await?;
        if setting.apply() == Apply::Restart
            && !crate::plan::restart_comes_later(&self.step.address, self.ctx.steps)
        {
            self.rolling_restart(&leader).await?;
        }
        Ok(changed(self.step.action))
    }

    /// Restart every started node, one at a time and each waited for until
    /// its checks pass: standbys first, then the leader, which hands over
    /// to a standby first.
    pub(super) async fn rolling_restart(&self, leader: &Machine) -> Result<(), ProviderError> {
        let (view, _) = self.read().await?;
        let mut order: Vec<&Machine> = view
            .machines
            .iter()
            .filter(|m| m.state == "started")
            .collect();
        order.sort_by_key(|m| m.id == leader.id);
        for m in order {
            tracing::info!(machine = %m.id, "restarting for new settings");
            self.restart_node(m).await?;
        }
        Ok(())
    }
}
