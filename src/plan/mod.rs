//! The plan engine: a pure function of desired and live state, and the
//! plan's types.

pub mod engine;
pub mod notes;
pub mod types;

pub use engine::{plan, show_value, PlanOptions};
pub use notes::PlanNotes;
pub use types::*;

/// Whether a step after the one for `this` in `steps` sets another
/// PostgreSQL setting that needs a restart: then that one does the rolling
/// restart for both.
pub fn restart_comes_later(this: &crate::model::Address, steps: &[Step]) -> bool {
    use crate::pgsettings::{self, Apply};
    steps
        .iter()
        .skip_while(|s| s.address != *this)
        .skip(1)
        .any(|s| {
            s.kind == crate::model::Kind::Parameter
                && s.action != Action::Delete
                && pgsettings::lookup(s.address.name()).is_some_and(|p| p.apply() == Apply::Restart)
        })
}
