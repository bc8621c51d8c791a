//! `[postgres.parameters]`: PostgreSQL settings, checked against
//! PostgreSQL 15's own list (name, type, unit, range, enum values) and
//! refused when flyplan or pg_auto_failover sets them.

use super::*;
use crate::pgsettings::{self, Given};

impl Reader<'_> {
    /// The settings by canonical name, with canonical values.
    pub(super) fn read_parameters(&mut self, f: &Field) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(t) = self.table(f, "[postgres.parameters]") else {
            return out;
        };
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        for (name, _) in t.t.iter() {
            let Some(entry) = self.field(&t, name) else {
                continue;
            };
            let Some(setting) = pgsettings::lookup(name) else {
                self.poisoned.insert(entry.path.clone());
                let help = match names::closest(name, pgsettings::names()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!(
                        "names are those of PostgreSQL {}'s pg_settings, e.g. `work_mem`",
                        pgsettings::MAJOR
                    ),
                };
                self.error_help(
                    entry.key_span.clone(),
                    format!("unknown PostgreSQL setting `{name}`"),
                    help,
                );
                continue;
            };
            if let Some(why) = pgsettings::owned(setting) {
                self.poisoned.insert(entry.path.clone());
                self.error_help(
                    entry.key_span.clone(),
                    format!("`{name}` cannot be set in fly.toml"),
                    why,
                );
                continue;
            }
            self.unique(&mut seen, setting.name, entry.key_span.clone(), "setting");
            let given = match entry.item.as_value() {
                Some(Value::Boolean(b)) => Some(Given::Bool(*b.value())),
                Some(Value::Integer(n)) => Some(Given::Integer(*n.value())),
                Some(Value::Float(x)) => Some(Given::Float(*x.value())),
                Some(Value::String(s)) => Some(Given::Text(s.value().clone())),
                _ => None,
            };
            let Some(given) = given else {
                let found = a_type(entry.item);
                self.invalid_help(
                    &entry,
                    format!(
                        "`{}` must be a string, number or boolean, found {found}",
                        entry.path
                    ),
                    "e.g. work_mem = \"8MB\", max_connections = 300, jit = false",
                );
                continue;
            };
            match pgsettings::canonical(setting, &given) {
                Ok(v) => {
                    out.insert(setting.name.to_string(), v);
                }
                Err(why) => self.invalid(&entry, format!("invalid value: {why}")),
            }
        }
        out
    }
}
