//! Reading fly.toml: parse with spans (toml_edit), validate, and produce a
//! typed [`Config`] or located diagnostics.

pub mod diag;
pub mod model;

pub use diag::{ConfigError, Diagnostic};
pub use model::*;

/// Read and validate a fly.toml.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    Err(ConfigError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other("the parser is not built yet"),
    })
}
