//! `[secrets]`: each secret by name and source (`from_env`, `from_file`,
//! `generate`), never by value.

use super::*;

impl Reader<'_> {
    /// `[secrets]`: name → source; never a value.
    pub(super) fn read_secrets(&mut self, root: &Tbl) -> BTreeMap<String, SecretSource> {
        let mut out = BTreeMap::new();
        let Some(f) = self.field(root, "secrets") else {
            return out;
        };
        let Some(t) = self.table(&f, "[secrets]") else {
            return out;
        };
        for (name, _) in t.t.iter() {
            let Some(entry) = self.field(&t, name) else {
                continue;
            };
            if !names::is_secret_name(name) {
                self.error_help(
                    entry.key_span.clone(),
                    format!("invalid secret name {name:?}"),
                    "secret names use uppercase letters, digits and `_`, e.g. PG_PASSWORD",
                );
            }
            if entry.item.is_str() {
                self.invalid_help(
                    &entry,
                    "secrets are declared by source, never by value",
                    format!("write {name} = {{ from_env = \"{name}\" }} and set the value in the environment"),
                );
                continue;
            }
            let Some(st) = entry.item.as_table_like() else {
                let found = a_type(entry.item);
                self.invalid_help(
                    &entry,
                    format!("`{}` must be an inline table, found {found}", entry.path),
                    format!("write {name} = {{ from_env = \"{name}\" }}"),
                );
                continue;
            };
            let st = Tbl {
                t: st,
                path: entry.path.clone(),
                shown: format!("secrets.{name}"),
                span: entry.span.clone(),
            };
            if let Some(source) = self.secret_source(&st, name) {
                out.insert(name.to_string(), source);
            }
        }
        out
    }

    pub(super) fn secret_source(&mut self, t: &Tbl, name: &str) -> Option<SecretSource> {
        self.check_keys(t, &keys::SECRET);
        let mut sources: Vec<(SecretSource, Span)> = Vec::new();
        if let Some(f) = self.field(t, "from_env") {
            if let Some(var) = self.string(&f) {
                if names::is_env_var_name(&var) {
                    sources.push((SecretSource::Env { var }, f.key_span.clone()));
                } else {
                    self.invalid(&f, format!("invalid environment variable name {var:?}"));
                }
            }
        }
        if let Some(f) = self.field(t, "from_file") {
            if let Some(path) = self.string(&f) {
                if path.trim().is_empty() {
                    self.invalid(&f, "`from_file` must name a file");
                } else {
                    sources.push((SecretSource::File { path: path.into() }, f.key_span.clone()));
                }
            }
        }
        if let Some(f) = self.field(t, "generate") {
            match self.boolean(&f) {
                Some(true) => sources.push((SecretSource::Generate, f.key_span.clone())),
                Some(false) => self.invalid_help(
                    &f,
                    "`generate` can only be true",
                    "to take the value from elsewhere use `from_env` or `from_file`",
                ),
                None => {}
            }
        }
        match sources.len() {
            1 => sources.pop().map(|(s, _)| s),
            0 => {
                let inner = format!("{}.", t.path);
                if !self
                    .poisoned
                    .iter()
                    .any(|p| *p == t.path || p.starts_with(&inner))
                {
                    self.error_help(
                        t.span.clone(),
                        format!("secret `{name}` has no source"),
                        format!("write {name} = {{ from_env = \"{name}\" }}, {{ from_file = \"path\" }} or {{ generate = true }}"),
                    );
                }
                None
            }
            _ => {
                let span = sources[1].1.clone();
                self.error_help(
                    span,
                    format!("secret `{name}` has more than one source"),
                    "keep one of `from_env`, `from_file` and `generate`",
                );
                None
            }
        }
    }
}
