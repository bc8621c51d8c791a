//! Plan output for people and tools: Terraform-style text (coloured on a
//! terminal), markdown for pull-request comments, and versioned JSON.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{json, Map, Value};
use similar::{ChangeTag, TextDiff};

use crate::model::Resource;
use crate::plan::{show_value, Action, Plan, Step};

/// Output formats of `flyplan plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

/// Render `plan` in `format`; `color` adds ANSI colours to text.
pub fn render(plan: &Plan, format: Format, color: bool) -> String {
    match format {
        Format::Text => text(plan, color),
        Format::Markdown => markdown(plan),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&json_value(plan)).expect("plan serialises");
            s.push('\n');
            s
        }
    }
}

/// The closing line, as Terraform prints it.
pub fn summary_line(plan: &Plan) -> String {
    if !plan.has_changes() {
        return "No changes. Live state matches fly.toml.".to_string();
    }
    let s = plan.summary;
    let mut line = format!(
        "Plan: {} to add, {} to change, {} to destroy.",
        s.add, s.change, s.destroy
    );
    if s.blocked > 0 {
        let _ = write!(
            line,
            " {} blocked: apply will refuse.",
            plural(s.blocked, "step", "steps")
        );
    }
    line
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Delete => "will be destroyed",
        Action::Replace => "must be replaced",
        Action::NoOp => "is unchanged",
    }
}

struct Palette {
    on: bool,
}

impl Palette {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn action(&self, a: Action, s: &str) -> String {
        let code = match a {
            Action::Create => "32",
            Action::Update => "33",
            Action::Delete => "31",
            Action::Replace => "35",
            Action::NoOp => "0",
        };
        self.paint(code, s)
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
}

/// One attribute line of a step: symbol, key, value(s).
struct AttrLine {
    symbol: &'static str,
    key: String,
    value: String,
}

/// One side of a step as attribute lines show it.
struct Side {
    attrs: Map<String, Value>,
    sensitive: Vec<&'static str>,
}

impl Side {
    fn of(r: Option<&Resource>) -> Self {
        Side {
            attrs: r.map(|r| r.spec.attrs()).unwrap_or_default(),
            sensitive: r.map(|r| r.spec.sensitive()).unwrap_or_default(),
        }
    }
    fn is_sensitive(&self, key: &str) -> bool {
        self.sensitive.contains(&key)
    }
    fn show(&self, key: &str) -> String {
        if self.is_sensitive(key) {
            return "(sensitive value)".to_string();
        }
        match self.attrs.get(key) {
            None | Some(Value::Null) => "null".to_string(),
            Some(v) => v.to_string(),
        }
    }
}

fn attr_lines(step: &Step) -> (Vec<AttrLine>, usize) {
    let before = Side::of(step.before.as_ref());
    let after = Side::of(step.after.as_ref());
    let mut lines = Vec::new();
    let mut hidden = 0;
    match step.action {
        Action::Create => {
            for k in after.attrs.keys() {
                lines.push(AttrLine {
                    symbol: "+",
                    key: k.clone(),
                    value: after.show(k),
                });
            }
        }
        Action::Delete => {
            for (k, v) in &before.attrs {
                if before.is_sensitive(k) || !v.is_null() {
                    lines.push(AttrLine {
                        symbol: "-",
                        key: k.clone(),
                        value: format!("{} -> null", before.show(k)),
                    });
                }
            }
        }
        Action::Update | Action::Replace | Action::NoOp => {
            let changed: BTreeSet<&str> = step.changed.iter().map(String::as_str).collect();
            for k in after.attrs.keys() {
                if changed.contains(k.as_str()) {
                    let value = if after.is_sensitive(k) || before.is_sensitive(k) {
                        "(sensitive value)".to_string()
                    } else if let (Some(Value::Array(b)), Some(Value::Array(a))) =
                        (before.attrs.get(k), after.attrs.get(k))
                    {
                        list_diff(b, a)
                    } else {
                        format!("{} -> {}", before.show(k), after.show(k))
                    };
                    lines.push(AttrLine {
                        symbol: "~",
                        key: k.clone(),
                        value,
                    });
                } else {
                    hidden += 1;
                }
            }
        }
    }
    (lines, hidden)
}

/// A changed list, one element a line, marked with similar's line diff.
fn list_diff(before: &[Value], after: &[Value]) -> String {
    let lines = |v: &[Value]| v.iter().map(|x| format!("{x}\n")).collect::<String>();
    let (b, a) = (lines(before), lines(after));
    let mut out = String::from("[");
    for change in TextDiff::from_lines(&b, &a).iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => "-",
            ChangeTag::Insert => "+",
            ChangeTag::Equal => " ",
        };
        let _ = write!(out, "\n              {sign} {},", change.value().trim_end());
    }
    out.push_str("\n            ]");
    out
}

fn header(step: &Step) -> String {
    format!("# {} {} ({})", step.address, verb(step.action), step.reason)
}

fn text(plan: &Plan, color: bool) -> String {
    let p = Palette { on: color };
    let mut out = String::new();
    for note in &plan.notes {
        let _ = writeln!(out, "Note: {note}");
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out);
    }
    if plan.has_changes() {
        let _ = writeln!(
            out,
            "flyplan will perform the following actions on app {}:\n",
            plan.app
        );
        for step in &plan.steps {
            let _ = writeln!(out, "  {}", p.bold(&header(step)));
            for note in &step.notes {
                let _ = writeln!(out, "  # ({note})");
            }
            if let Some(b) = &step.blocked {
                let _ = writeln!(
                    out,
                    "  {}",
                    p.paint("31;1", &format!("# BLOCKED: {}", b.reason))
                );
            }
            let _ = writeln!(
                out,
                "  {} {} {{",
                p.action(step.action, step.action.symbol()),
                step.address
            );
            let (lines, hidden) = attr_lines(step);
            let width = lines.iter().map(|l| l.key.len()).max().unwrap_or(0);
            for l in lines {
                let sym = match l.symbol {
                    "+" => p.action(Action::Create, "+"),
                    "-" => p.action(Action::Delete, "-"),
                    _ => p.action(Action::Update, "~"),
                };
                let _ = writeln!(out, "      {sym} {:<width$} = {}", l.key, l.value);
            }
            if hidden > 0 {
                let _ = writeln!(
                    out,
                    "        # ({} hidden)",
                    plural(hidden, "unchanged attribute", "unchanged attributes")
                );
            }
            let _ = writeln!(out, "    }}\n");
        }
    }
    let _ = writeln!(out, "{}", p.bold(&summary_line(plan)));
    out
}

/// `key = value` lines of both sides of a step, for diffs. Inputs for apply
/// count as unchanged; a changed sensitive value says so without showing it.
fn diff_sides(step: &Step) -> (String, String) {
    let mut before = String::new();
    let mut after = String::new();
    let changed: BTreeSet<&str> = step.changed.iter().map(String::as_str).collect();
    if let Some(r) = &step.before {
        for k in r.spec.attrs().keys() {
            let _ = writeln!(before, "{k} = {}", show_value(r, k));
        }
    }
    if let Some(r) = &step.after {
        for k in r.spec.attrs().keys() {
            let value = show_value(r, k);
            if step.before.is_some() && r.spec.is_input(k) {
                let _ = writeln!(before, "{k} = {value}");
            }
            if r.is_sensitive(k) && changed.contains(k.as_str()) {
                let _ = writeln!(after, "{k} = (sensitive value, changed)");
            } else {
                let _ = writeln!(after, "{k} = {value}");
            }
        }
    }
    // Keep both sides in key order so the diff pairs lines up.
    let sort = |s: String| {
        let mut lines: Vec<&str> = s.lines().collect();
        lines.sort_unstable();
        lines.iter().map(|l| format!("{l}\n")).collect::<String>()
    };
    (sort(before), sort(after))
}

fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### flyplan: app `{}`\n", plan.app);
    for note in &plan.notes {
        let _ = writeln!(out, "- **Note:** {note}");
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out);
    }
    if !plan.has_changes() {
        let _ = writeln!(out, "{}", summary_line(plan));
        return out;
    }
    let _ = writeln!(out, "**{}**\n", summary_line(plan));
    let _ = writeln!(out, "| | address | action | reason |");
    let _ = writeln!(out, "|---|---|---|---|");
    for s in &plan.steps {
        let blocked = if s.blocked.is_some() {
            " ⛔ blocked"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {}{} | {} |",
            s.action.symbol(),
            s.address,
            s.action.as_str(),
            blocked,
            s.reason.replace('|', "\\|")
        );
    }
    let _ = writeln!(out);
    for s in &plan.steps {
        let _ = writeln!(
            out,
            "<details><summary><code>{} {}</code></summary>\n",
            s.action.symbol(),
            s.address
        );
        for note in &s.notes {
            let _ = writeln!(out, "- {note}");
        }
        if let Some(b) = &s.blocked {
            let _ = writeln!(out, "- **blocked:** {}", b.reason);
        }
        if !s.notes.is_empty() || s.blocked.is_some() {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "```diff");
        let (before, after) = diff_sides(s);
        let diff = TextDiff::from_lines(&before, &after);
        for change in diff.iter_all_changes() {
            let sign = match change.tag() {
                ChangeTag::Delete => "-",
                ChangeTag::Insert => "+",
                ChangeTag::Equal => " ",
            };
            let _ = write!(out, "{sign} {}", change.value());
            if change.missing_newline() {
                let _ = writeln!(out);
            }
        }
        let _ = writeln!(out, "```\n</details>\n");
    }
    out
}

fn masked(r: &Resource) -> Value {
    let mut m = r.spec.attrs();
    for k in r.spec.sensitive() {
        if let Some(v) = m.get_mut(k) {
            *v = Value::String("(sensitive value)".into());
        }
    }
    Value::Object(m)
}

fn sensitive_map(r: &Resource) -> Value {
    Value::Object(
        r.spec
            .sensitive()
            .into_iter()
            .map(|k| (k.to_string(), Value::Bool(true)))
            .collect(),
    )
}

/// The `--format json` document.
pub fn json_value(plan: &Plan) -> Value {
    let mut changes = Vec::new();
    for s in &plan.steps {
        let actions = match s.action {
            Action::Replace => vec!["delete", "create"],
            a => vec![a.as_str()],
        };
        let sensitive_changed: Vec<&String> = s
            .changed
            .iter()
            .filter(|k| {
                s.after.as_ref().is_some_and(|r| r.is_sensitive(k))
                    || s.before.as_ref().is_some_and(|r| r.is_sensitive(k))
            })
            .collect();
        changes.push(json!({
            "id": s.id,
            "address": s.address,
            "kind": s.kind,
            "actions": actions,
            "reason": s.reason,
            "before": s.before.as_ref().map(masked),
            "after": s.after.as_ref().map(masked),
            "after_sensitive": s.after.as_ref().map(sensitive_map),
            "changed": s.changed,
            "sensitive_changed": sensitive_changed,
            "blocked": s.blocked,
            "depends_on": s.depends_on,
            "notes": s.notes,
        }));
    }
    for a in &plan.unchanged {
        changes.push(json!({ "address": a, "actions": ["no-op"] }));
    }
    let mut doc = json!({
        "format_version": plan.format_version,
        "app": plan.app,
        "live_fingerprint": plan.live_fingerprint,
        "allow_destroy": plan.allow_destroy,
        "changes": changes,
        "summary": {
            "add": plan.summary.add,
            "change": plan.summary.change,
            "destroy": plan.summary.destroy,
            "blocked": plan.summary.blocked,
            "has_changes": plan.has_changes(),
            "text": summary_line(plan),
        },
    });
    if !plan.notes.is_empty() {
        doc["notes"] = json!(plan.notes);
    }
    doc
}
