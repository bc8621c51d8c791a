//! flyplan keeps Fly.io Postgres clusters equal to a fly.toml: it reads the
//! desired state, observes the live state, plans, and applies.

pub mod apply;
pub mod backup;
pub mod cli;
pub mod config;
pub mod desired;
pub mod error;
pub mod fault;
pub mod fsutil;
pub mod import;
pub mod live;
pub mod logging;
pub mod model;
pub mod pgsettings;
pub mod pipeline;
pub mod plan;
pub mod planfile;
pub mod provider;
pub mod reconcile;
pub mod render;
pub mod runtime;
pub mod secrets;
pub mod snapshot;
pub mod sql;
