//! Reading fly.toml: parse with spans (toml_edit), validate, and produce a
//! typed [`Config`] or located diagnostics.

mod detect;
pub mod diag;
mod keys;
mod limits;
pub mod model;
mod names;
mod parse;
pub mod presets;
mod regions;
pub(crate) mod units;
mod validate;

use std::path::Path;

pub use diag::{ConfigError, Diagnostic};
pub use keys::known_keys;
pub use limits::{check_local, LOCAL_MAX_NODES};
pub use model::*;
pub use names::{check_fly_app_name, identifier_for_app};
pub use parse::normalise_time;
pub use regions::REGIONS;

/// Read the fly.toml at `path` and [`parse`] it.
///
/// # Errors
///
/// [`ConfigError::Io`] when the file cannot be read, otherwise as [`parse`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &source)
}

/// Parse and validate the text of a fly.toml. `path` is used in messages
/// (and, in the services dialect, to name the app after its directory).
///
/// # Errors
///
/// [`ConfigError::Invalid`] with every problem found, each located at a line
/// and column of `source`, sorted by position.
pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigError> {
    let walked = parse::walk(path, source).map_err(ConfigError::single)?;
    let mut diagnostics = walked.diagnostics;
    diagnostics.extend(validate::validate(
        &walked.config,
        &walked.secret_refs,
        &walked.poisoned,
    ));
    if diagnostics.is_empty() {
        return Ok(walked.config);
    }
    diagnostics.sort_by_key(|d| (d.line, d.column));
    Err(ConfigError::Invalid { diagnostics })
}
