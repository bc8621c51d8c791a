//! The plan engine: a pure function of desired and live state.

pub mod types;

pub use types::*;
