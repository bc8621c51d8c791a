//! Reading fly.toml: parse with spans (toml_edit), validate, and produce a
//! typed [`Config`] or located diagnostics.

pub mod diag;
pub mod model;

pub use diag::{ConfigError, Diagnostic};
pub use model::*;
