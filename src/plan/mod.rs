//! The plan engine: a pure function of desired and live state, and the
//! plan's types.

pub mod engine;
pub mod notes;
pub mod types;

pub use engine::{plan, show_value, PlanOptions};
pub use notes::PlanNotes;
pub use types::*;
