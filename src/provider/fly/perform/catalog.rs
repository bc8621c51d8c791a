//! Roles, databases and attachments: SQL on the leader.

use super::*;

/// The catalog objects SQL steps make and drop.
enum Object {
    User,
    Database,
    Attachment,
}

impl Performer<'_> {
    /// Roles, databases and attachments: SQL on the leader.
    pub(super) async fn sql(&self) -> Result<Outcome, ProviderError> {
        if self.step.action == Action::Replace {
            let before = self.step.before.as_ref().or(self.step.after.as_ref());
            if let Some(r) = before {
                self.sql_delete(r).await?;
            }
            self.sql_ensure(self.desired()?).await?;
            return Ok(Outcome::Created);
        }
        if self.step.action == Action::Delete {
            let r = self
                .step
                .before
                .as_ref()
                .or(self.step.after.as_ref())
                .ok_or_else(|| self.fail("a delete without a resource"))?;
            let done = self.sql_delete(r).await?;
            return Ok(if done {
                Outcome::Deleted
            } else {
                Outcome::NotNeeded
            });
        }
        let done = self.sql_ensure(self.desired()?).await?;
        Ok(if done {
            changed(self.step.action)
        } else {
            Outcome::NotNeeded
        })
    }

    /// What the step's SQL acts on; other kinds have no SQL.
    fn object(&self) -> Result<Object, ProviderError> {
        match self.step.kind {
            Kind::User => Ok(Object::User),
            Kind::Database => Ok(Object::Database),
            Kind::Attachment => Ok(Object::Attachment),
            Kind::App
            | Kind::Secret
            | Kind::Volume
            | Kind::Machine
            | Kind::Formation
            | Kind::Endpoint
            | Kind::SnapshotPolicy
            | Kind::Parameter
            | Kind::BackupPolicy => Err(self.fail("not a role, database or attachment")),
        }
    }

    pub(super) async fn sql_ensure(&self, r: &Resource) -> Result<bool, ProviderError> {
        let (p, what, app) = (self.p, self.label.as_str(), self.app);
        match self.object()? {
            Object::User => p.ensure_user(r, self.ctx, what).await,
            Object::Database => roles::ensure_database(&p.primary(app, what).await?, r).await,
            Object::Attachment => {
                let primary = p.primary(app, what).await?;
                let consumers = p.consumers_for_urls(app).await?;
                attachments::ensure(&primary, &consumers, r).await
            }
        }
    }

    pub(super) async fn sql_delete(&self, r: &Resource) -> Result<bool, ProviderError> {
        let (p, what, app) = (self.p, self.label.as_str(), self.app);
        match self.object()? {
            Object::User => p.remove_user(r, app, what).await,
            Object::Database => roles::remove_database(&p.primary(app, what).await?, r).await,
            Object::Attachment => {
                attachments::remove(&p.primary(app, what).await?, &p.consumers(app), r).await
            }
        }
    }

    pub(super) fn desired(&self) -> Result<&Resource, ProviderError> {
        self.step
            .after
            .as_ref()
            .ok_or_else(|| self.fail("a create or update without a desired resource"))
    }
}
