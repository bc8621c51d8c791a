//! flyplan keeps Fly.io Postgres clusters equal to a fly.toml: it reads the
//! desired state, observes the live state, plans, and applies.

pub mod config;
pub mod live;
pub mod model;
pub mod plan;
pub mod provider;
pub mod sql;
