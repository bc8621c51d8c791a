//! Walks a fly.toml parsed by toml_edit (which keeps byte spans) table by
//! table, checks the shape and every value, records the span of each key it
//! reads, and collects all problems instead of stopping at the first.
//!
//! Relations between tables (a secret that is referenced but not declared,
//! sync standbys against instances) are checked afterwards in `validate`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use toml_edit::{Document, Item, TableLike, Value};

use super::detect;
use super::diag::Diagnostic;
use super::keys::{self, KeyTable, KeyUse};
use super::model::*;
use super::names;
use super::regions;
use super::units;

mod attachments;
mod backup;
pub use backup::normalise_time;
mod cluster;
mod machines;
mod parameters;
mod postgres;
mod secrets;
mod services;

const DEFAULT_IMAGE: &str = "flyio/postgres-flex:15";
const DEFAULT_PG_MAJOR: u32 = 15;
const DEFAULT_PORT: u16 = 5432;
const SERVICES_DEFAULT_REGION: &str = "iad";

/// Everything the walk produced: the config (meaningful only when there are
/// no diagnostics), the problems found, and what `validate` needs.
pub(crate) struct Walked {
    pub config: Config,
    pub diagnostics: Vec<Diagnostic>,
    /// Secret names referenced by other keys, with the path that references them.
    pub secret_refs: Vec<(String, String)>,
    /// Paths whose value was invalid; checks that depend on them are skipped.
    pub poisoned: BTreeSet<String>,
}

/// Parse `source` (the text of the file at `path`) into a [`Walked`], or the
/// single diagnostic of a TOML syntax error.
pub(crate) fn walk(path: &Path, source: &str) -> Result<Walked, Diagnostic> {
    let doc = Document::parse(source).map_err(|e| syntax_error(path, source, &e))?;
    let mut reader = Reader {
        path,
        source,
        diags: Vec::new(),
        notes: Vec::new(),
        spans: SpanMap::default(),
        poisoned: BTreeSet::new(),
        secret_refs: Vec::new(),
    };
    let root = Tbl {
        t: doc.as_table(),
        path: String::new(),
        shown: "fly.toml".to_string(),
        span: 0..0,
    };
    let config = reader.read_root(&root, detect::looks_like_ordinary_app(doc.as_table()));
    Ok(Walked {
        config,
        diagnostics: reader.diags,
        secret_refs: reader.secret_refs,
        poisoned: reader.poisoned,
    })
}

fn syntax_error(path: &Path, source: &str, e: &toml_edit::TomlError) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    let mut message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if message == "duplicate key" {
        if let Some(key) = source.get(span.clone()).filter(|k| !k.is_empty()) {
            message = format!("duplicate key `{key}`");
        }
    }
    Diagnostic::at(path, source, span, format!("TOML syntax error: {message}"))
}

/// A table being read: the table itself, its dotted path for spans and
/// messages (`postgres`, `mounts[0]`), how the user wrote its header, and the
/// span of that header (or of the inline table).
struct Tbl<'d> {
    t: &'d dyn TableLike,
    path: String,
    shown: String,
    span: Span,
}

impl Tbl<'_> {
    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// One key of a table, found: its item, dotted path, and the spans of the
/// value and of the key.
struct Field<'d> {
    item: &'d Item,
    path: String,
    span: Span,
    key_span: Span,
}

struct Reader<'s> {
    path: &'s Path,
    source: &'s str,
    diags: Vec<Diagnostic>,
    notes: Vec<Note>,
    spans: SpanMap,
    poisoned: BTreeSet<String>,
    secret_refs: Vec<(String, String)>,
}

fn a_type(item: &Item) -> String {
    let name = item.type_name();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

fn value_span(v: &Value, fallback: &Span) -> Span {
    v.span().unwrap_or_else(|| fallback.clone())
}

impl<'s> Reader<'s> {
    // ----- reporting -------------------------------------------------------

    fn error(&mut self, span: Span, message: impl Into<String>) {
        let d = Diagnostic::at(self.path, self.source, span, message);
        self.diags.push(d);
    }

    fn error_help(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        let d = Diagnostic::at(self.path, self.source, span, message).with_help(help);
        self.diags.push(d);
    }

    /// An invalid value: report it and mark its path so that dependent checks
    /// do not pile further errors on it.
    fn invalid(&mut self, f: &Field, message: impl Into<String>) {
        self.poisoned.insert(f.path.clone());
        self.error(f.span.clone(), message);
    }

    fn invalid_help(&mut self, f: &Field, message: impl Into<String>, help: impl Into<String>) {
        self.poisoned.insert(f.path.clone());
        self.error_help(f.span.clone(), message, help);
    }

    fn note(&mut self, span: Span, message: impl Into<String>) {
        let d = Diagnostic::at(self.path, self.source, span, message);
        self.notes.push(Note {
            line: d.line,
            column: d.column,
            message: d.message,
        });
    }

    /// Where problems of the whole file are shown: the start of its first
    /// line that is not blank, so the caret has a line to stand under.
    fn start(&self) -> Span {
        let at = self.source.find(|c: char| !c.is_whitespace()).unwrap_or(0);
        let line_start = self.source[..at].rfind('\n').map_or(0, |i| i + 1);
        line_start..line_start
    }

    fn ignored_note(&mut self, span: Span, path: &str) {
        self.note(
            span,
            format!("`{path}` is an ordinary Fly app key; flyplan ignores it"),
        );
    }

    // ----- generic access --------------------------------------------------

    /// The key `key` of `t`, if present; records its span.
    fn field<'d>(&mut self, t: &Tbl<'d>, key: &str) -> Option<Field<'d>> {
        let (k, item) = t.t.get_key_value(key)?;
        if item.is_none() {
            return None;
        }
        let key_span = k.span().unwrap_or_else(|| t.span.clone());
        let span = item.span().unwrap_or_else(|| key_span.clone());
        let path = t.child(key);
        self.spans.insert(path.clone(), span.clone());
        Some(Field {
            item,
            path,
            span,
            key_span,
        })
    }

    /// Every key of `t` must be in `table`; ignored keys get a note, unknown
    /// keys an error with a suggestion.
    fn check_keys(&mut self, t: &Tbl, table: &KeyTable) {
        for (name, _) in t.t.iter() {
            let key_span =
                t.t.get_key_value(name)
                    .and_then(|(k, _)| k.span())
                    .unwrap_or_else(|| t.span.clone());
            match table.lookup(name) {
                Some(KeyUse::Read) => {}
                Some(KeyUse::Ignored) => self.ignored_note(key_span, &t.child(name)),
                None => {
                    self.poisoned.insert(t.path.clone());
                    self.unknown_key(t, table, name, key_span);
                }
            }
        }
    }

    fn unknown_key(&mut self, t: &Tbl, table: &KeyTable, name: &str, span: Span) {
        let message = if t.path.is_empty() {
            format!("unknown key `{name}`")
        } else {
            format!("unknown key `{name}` in `{}`", t.shown)
        };
        let help = match names::closest(name, table.names()) {
            Some(best) => format!("did you mean `{best}`?"),
            None if t.path.is_empty() => format!(
                "flyplan reads {}; ordinary Fly app keys such as `http_service` and `checks` are ignored",
                backticked(table.read_names())
            ),
            None => format!("`{}` accepts {}", t.shown, backticked(table.names())),
        };
        self.error_help(span, message, help);
    }

    fn string(&mut self, f: &Field) -> Option<String> {
        match f.item.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                let found = a_type(f.item);
                self.invalid(f, format!("`{}` must be a string, found {found}", f.path));
                None
            }
        }
    }

    fn integer(&mut self, f: &Field) -> Option<i64> {
        match f.item.as_integer() {
            Some(n) => Some(n),
            None => {
                let found = a_type(f.item);
                self.invalid(f, format!("`{}` must be an integer, found {found}", f.path));
                None
            }
        }
    }

    /// An integer in `min..=max`.
    fn integer_in(&mut self, f: &Field, min: i64, max: i64) -> Option<i64> {
        let n = self.integer(f)?;
        if n < min {
            self.invalid(f, format!("`{}` must be at least {min}", f.path));
            None
        } else if n > max {
            self.invalid(f, format!("`{}` must be at most {max}", f.path));
            None
        } else {
            Some(n)
        }
    }

    fn boolean(&mut self, f: &Field) -> Option<bool> {
        match f.item.as_bool() {
            Some(b) => Some(b),
            None => {
                let found = a_type(f.item);
                self.invalid_help(
                    f,
                    format!("`{}` must be a boolean, found {found}", f.path),
                    "write true or false, without quotes",
                );
                None
            }
        }
    }

    fn get_string(&mut self, t: &Tbl, key: &str) -> Option<(String, Span)> {
        let f = self.field(t, key)?;
        let s = self.string(&f)?;
        Some((s, f.span))
    }

    fn get_bool(&mut self, t: &Tbl, key: &str) -> Option<bool> {
        let f = self.field(t, key)?;
        self.boolean(&f)
    }

    /// A string that must be one of `allowed`.
    fn get_choice(&mut self, t: &Tbl, key: &str, allowed: &[&str]) -> Option<String> {
        let f = self.field(t, key)?;
        let s = self.string(&f)?;
        if allowed.contains(&s.as_str()) {
            return Some(s);
        }
        let help = match names::closest(&s, allowed.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("use one of {}", quoted(allowed.iter().copied())),
        };
        self.invalid_help(
            &f,
            format!(
                "`{}` must be one of {}",
                f.path,
                quoted(allowed.iter().copied())
            ),
            help,
        );
        None
    }

    fn get_port(&mut self, t: &Tbl, key: &str) -> Option<(u16, Span)> {
        let f = self.field(t, key)?;
        let n = self.integer_in(&f, 1, 65535)?;
        Some((u16::try_from(n).ok()?, f.span))
    }

    /// A table (`[x]` or an inline table).
    fn table<'d>(&mut self, f: &Field<'d>, shown: &str) -> Option<Tbl<'d>> {
        match f.item.as_table_like() {
            Some(t) => Some(Tbl {
                t,
                path: f.path.clone(),
                shown: shown.to_string(),
                span: f.span.clone(),
            }),
            None => {
                let found = a_type(f.item);
                let help = if f.item.is_array_of_tables() {
                    format!("write {shown}, not [{shown}]")
                } else if shown.starts_with('[') {
                    format!("write it as {shown} with keys below it")
                } else {
                    format!("write it as {shown}")
                };
                self.invalid_help(
                    f,
                    format!("`{}` must be a table, found {found}", f.path),
                    help,
                );
                None
            }
        }
    }

    /// A list of tables: `[[x]]`, an array of inline tables, or (when
    /// `single` is true) one `[x]` table standing for a list of one.
    fn tables<'d>(&mut self, f: &Field<'d>, single: bool) -> Vec<Tbl<'d>> {
        let entry = |t: &'d dyn TableLike, i: usize, span: Span, shown: String| Tbl {
            t,
            path: format!("{}[{i}]", f.path),
            shown,
            span,
        };
        match f.item {
            Item::ArrayOfTables(a) => a
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let span = t.span().unwrap_or_else(|| f.span.clone());
                    entry(t, i, span, format!("[[{}]]", f.path))
                })
                .collect(),
            Item::Value(Value::Array(a)) => {
                let mut out = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    let span = value_span(v, &f.span);
                    match v.as_inline_table() {
                        Some(t) => out.push(entry(t, i, span, format!("[[{}]]", f.path))),
                        None => {
                            self.poisoned.insert(f.path.clone());
                            self.error(
                                span,
                                format!(
                                    "`{}[{i}]` must be a table, found {}",
                                    f.path,
                                    a_type(&Item::Value(v.clone()))
                                ),
                            );
                        }
                    }
                }
                out
            }
            item if single => match item.as_table_like() {
                Some(t) => {
                    self.spans.insert(format!("{}[0]", f.path), f.span.clone());
                    vec![entry(t, 0, f.span.clone(), format!("[{}]", f.path))]
                }
                None => {
                    let found = a_type(f.item);
                    self.invalid(
                        f,
                        format!(
                            "`{}` must be a table or an array of tables, found {found}",
                            f.path
                        ),
                    );
                    Vec::new()
                }
            },
            _ => {
                let found = a_type(f.item);
                self.invalid_help(
                    f,
                    format!("`{}` must be an array of tables, found {found}", f.path),
                    format!("write each entry as [[{}]]", f.path),
                );
                Vec::new()
            }
        }
    }

    /// Record a table entry's own span under its indexed path.
    fn record(&mut self, t: &Tbl) {
        self.spans.insert(t.path.clone(), t.span.clone());
    }

    /// Report `name` (at `span`) if `seen` already has it, else remember it.
    fn unique(&mut self, seen: &mut BTreeMap<String, Span>, name: &str, span: Span, what: &str) {
        if let Some(first) = seen.get(name) {
            let line = Diagnostic::at(self.path, self.source, first.clone(), "").line;
            self.error_help(
                span,
                format!("{what} `{name}` is declared twice"),
                format!("the first one is on line {line}"),
            );
        } else {
            seen.insert(name.to_string(), span);
        }
    }

    /// A secret name given as a reference (`operator_password`, a user's
    /// password): it must look like a secret name and is checked against
    /// `[secrets]` later.
    fn secret_ref(&mut self, f: &Field, name: &str) -> Option<String> {
        if !names::is_secret_name(name) {
            self.invalid_help(
                f,
                format!("invalid secret name {name:?}"),
                "secret names use uppercase letters, digits and `_`, e.g. PG_PASSWORD",
            );
            return None;
        }
        self.secret_refs.push((name.to_string(), f.path.clone()));
        Some(name.to_string())
    }

    // ----- the whole file ----------------------------------------------------

    fn read_root(&mut self, root: &Tbl, ordinary_app: bool) -> Config {
        self.check_keys(root, &keys::TOP);
        let services_pg = self.read_services(root);
        let dialect = if services_pg.is_some() {
            Dialect::Services
        } else {
            Dialect::Native
        };
        let mut secrets = self.read_secrets(root);
        let app = self.read_app(root, dialect);
        if dialect == Dialect::Native && ordinary_app {
            let span = self.spans.get("app").unwrap_or_else(|| self.start());
            self.error_help(
                span,
                "this is the fly.toml of an ordinary Fly app, not of a Postgres cluster",
                "flyplan manages Postgres clusters; add a [postgres] section if this app is meant to be one",
            );
        }
        let primary_region = self.read_primary_region(root, dialect);
        let build_image = self.read_build(root);
        let mut postgres = self.read_postgres(root, &primary_region);
        let mut image = build_image.clone();
        if let Some(sp) = &services_pg {
            let services_image = self.read_services_postgres(sp, &mut postgres, &mut secrets);
            if let Some((img, span)) = services_image {
                if build_image.is_some() {
                    self.error_help(
                        span.clone(),
                        "the image is set twice, in `build.image` and `services.postgres.image`",
                        "keep one of them",
                    );
                }
                self.spans.insert("build.image", span.clone());
                image = Some((img, span));
            }
            // The seed text's cluster: a primary and one replica, and no
            // read replicas. The dialect says so, so the counts are declared.
            if !postgres.instances_declared {
                postgres.instances = 2;
                postgres.instances_declared = true;
            }
            postgres.read_replicas_declared = true;
            postgres.sync_standbys_declared = true;
        }
        let (image, pg_major) = self.image_and_major(image);
        let mounts = self.read_mounts(root);
        let vm = self.read_vm(root);
        let attachments = self.read_attachments(root);
        self.notes.sort_by_key(|n| (n.line, n.column));
        Config {
            path: self.path.to_path_buf(),
            source: self.source.to_string(),
            spans: std::mem::take(&mut self.spans),
            dialect,
            app,
            primary_region,
            image,
            pg_major,
            postgres,
            secrets,
            mounts,
            vm,
            attachments,
            notes: std::mem::take(&mut self.notes),
        }
    }
}

fn backticked<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
