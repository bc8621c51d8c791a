//! The plan: an ordered list of steps, each with its reason, made from a
//! desired and a live state, specific enough that apply makes no choices.

use serde::{Deserialize, Serialize};

use crate::model::{Address, Kind, Resource};

/// Version of the JSON plan format (`--format json` and `plan --out`).
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Delete,
    /// Delete then create (`-/+`).
    Replace,
    NoOp,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Replace => "replace",
            Action::NoOp => "no-op",
        }
    }
    /// Terraform's symbol for the action.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::Replace => "-/+",
            Action::NoOp => " ",
        }
    }
}

/// One change to one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Position in the plan (0-based); `depends_on` refers to these.
    pub id: usize,
    pub address: Address,
    pub kind: Kind,
    pub action: Action,
    /// Why: "not in live state", "sync_standbys changed", "drift: machine is stopped"...
    pub reason: String,
    /// Live resource before the step (none for a create).
    pub before: Option<Resource>,
    /// Desired resource after the step (none for a delete).
    pub after: Option<Resource>,
    /// Attribute names whose value changes (updates and replaces).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Why the step may not run: a destroy without `--allow-destroy`, or a
    /// change that cannot be made at all (a volume shrink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Blocked>,
    /// Steps that must finish first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<usize>,
    /// Extra lines for the reviewer ("the database is kept").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub reason: String,
    /// True when `--allow-destroy` would unblock it.
    pub needs_allow_destroy: bool,
}

/// Counts for the closing line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub blocked: usize,
}

/// A complete plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub app: String,
    /// Fingerprint of the live state the plan was made from.
    pub live_fingerprint: String,
    pub allow_destroy: bool,
    /// Changes in execution order.
    pub steps: Vec<Step>,
    /// Resources already as desired.
    pub unchanged: Vec<Address>,
    pub summary: Summary,
    /// Lines for the reviewer about the plan as a whole ("instances not
    /// declared in fly.toml: keeping the 3 live nodes ...").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.steps.is_empty()
    }
    pub fn blocked_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.blocked.is_some())
    }
}
