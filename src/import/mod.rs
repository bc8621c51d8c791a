//! `flyplan import`: the fly.toml of a cluster that already runs, written
//! from what a provider observed, so that planning it against the same
//! cluster changes nothing.
//!
//! What goes in: everything flyplan manages (app, region, image, node
//! counts, sync standbys, read replicas, volumes and their snapshot policy,
//! machine size, attachments, declared users and databases) and the names of
//! the secrets, each read from an environment variable of the same name.
//! What stays out: secret values (only digests are ever observed), the
//! roles and databases of PostgreSQL, pg_auto_failover and postgres-flex
//! themselves, and the internal secrets flyctl generates, which flyplan
//! leaves alone.

mod observed;
mod write;

use crate::live::Live;

pub use observed::{is_internal_database, is_internal_role, is_internal_secret, Observed};

/// What the user asked `import` to leave out.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// `--no-roles`: no `[[postgres.users]]` nor `[[postgres.databases]]`.
    /// Attachments stay: leaving one out would plan to detach it.
    pub no_roles: bool,
}

/// Errors of the import layer.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("app {app} does not exist: there is nothing to import")]
    NoSuchApp { app: String },
    #[error(
        "app {app}: cannot tell its primary region (the app records none and no node runs); \
         write primary_region in fly.toml by hand"
    )]
    NoPrimaryRegion { app: String },
    #[error("the fly.toml written for app {app} does not validate, which is a bug:\n{message}")]
    Invalid { app: String, message: String },
}

/// The fly.toml text of app `app` as `live` describes it.
///
/// # Errors
/// When the app does not exist, when its primary region cannot be told, or
/// when the text written does not validate (checked before it is returned).
///
/// # Guarantees
/// The text holds no secret value: a live state carries only digests, and
/// none is written.
pub fn fly_toml(app: &str, live: &Live, opts: ImportOptions) -> Result<String, ImportError> {
    let observed = Observed::read(app, live, opts)?;
    let text = write::document(&observed).to_string();
    if let Err(e) = crate::config::parse(std::path::Path::new("fly.toml"), &text) {
        return Err(ImportError::Invalid {
            app: observed.app.clone(),
            message: e.to_string(),
        });
    }
    Ok(text)
}
