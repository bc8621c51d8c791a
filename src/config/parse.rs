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

pub(crate) const DEFAULT_IMAGE: &str = "flyio/postgres-flex:15";
pub(crate) const DEFAULT_PG_MAJOR: u32 = 15;
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

    // ----- tables ----------------------------------------------------------

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
        let (mut postgres, instances_set) = self.read_postgres(root, &primary_region);
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
            if !instances_set {
                postgres.instances = 2;
            }
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

    /// `services`: the `[services.postgres]` table of the services dialect,
    /// or ordinary Fly services (ignored with a note).
    fn read_services<'d>(&mut self, root: &Tbl<'d>) -> Option<Tbl<'d>> {
        let f = self.field(root, "services")?;
        let Some(t) = f
            .item
            .as_table_like()
            .filter(|t| t.contains_key("postgres"))
        else {
            self.ignored_note(f.key_span.clone(), "services");
            return None;
        };
        let services = Tbl {
            t,
            path: "services".to_string(),
            shown: "[services]".to_string(),
            span: f.span.clone(),
        };
        for (name, _) in t.iter() {
            if name != "postgres" {
                let span = t
                    .get_key_value(name)
                    .and_then(|(k, _)| k.span())
                    .unwrap_or_else(|| f.span.clone());
                self.ignored_note(span, &format!("services.{name}"));
            }
        }
        let pg = self.field(&services, "postgres")?;
        self.table(&pg, "[services.postgres]")
    }

    fn read_app(&mut self, root: &Tbl, dialect: Dialect) -> String {
        let Some(f) = self.field(root, "app") else {
            if dialect == Dialect::Services {
                let name = self.app_from_directory();
                self.note(
                    self.start(),
                    format!("`app` is not set; using `{name}`, from the directory of the file"),
                );
                return name;
            }
            self.error_help(
                self.start(),
                "missing key `app`",
                "add app = \"<name>\", the Fly app of the cluster",
            );
            return String::new();
        };
        let Some(app) = self.string(&f) else {
            return String::new();
        };
        if app.is_empty() {
            self.invalid_help(
                &f,
                "`app` must not be empty",
                "set it to the Fly app of the cluster",
            );
        } else if let Err(why) = names::check_fly_app_name(&app) {
            self.invalid(&f, format!("invalid Fly app name {app:?}: {why}"));
        }
        app
    }

    /// The services dialect names no app: the directory holding the file
    /// stands in for it.
    fn app_from_directory(&self) -> String {
        std::path::absolute(self.path)
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .and_then(|n| names::sanitise_app_name(&n))
            .unwrap_or_else(|| "postgres".to_string())
    }

    fn read_primary_region(&mut self, root: &Tbl, dialect: Dialect) -> String {
        if let Some(f) = self.field(root, "primary_region") {
            let Some(code) = self.string(&f) else {
                return String::new();
            };
            self.check_region(&f, &code);
            return code;
        }
        // Fly Postgres apps made before `primary_region` existed name their
        // region in `env.PRIMARY_REGION`.
        let env = root
            .t
            .get("env")
            .and_then(Item::as_table_like)
            .and_then(|env| env.get("PRIMARY_REGION"))
            .and_then(|item| item.as_str().map(|s| (s.to_string(), item.span())));
        if let Some((code, span)) = env {
            let span = span.unwrap_or_else(|| self.start());
            self.spans.insert("primary_region", span.clone());
            let f_path = "env.PRIMARY_REGION".to_string();
            if regions::is_region(&code) {
                self.note(
                    span,
                    format!("`primary_region` is not set; using env.PRIMARY_REGION = {code:?}"),
                );
            } else {
                self.poisoned.insert(f_path);
                self.unknown_region(&code, span);
            }
            return code;
        }
        if dialect == Dialect::Services {
            self.note(
                self.start(),
                format!("`primary_region` is not set; using {SERVICES_DEFAULT_REGION:?}"),
            );
            return SERVICES_DEFAULT_REGION.to_string();
        }
        self.error_help(
            self.start(),
            "missing key `primary_region`",
            "add primary_region = \"<region>\", where the leader and its failover candidates run, e.g. \"iad\"",
        );
        String::new()
    }

    fn check_region(&mut self, f: &Field, code: &str) {
        if !regions::is_region(code) {
            self.poisoned.insert(f.path.clone());
            self.unknown_region(code, f.span.clone());
        }
    }

    fn unknown_region(&mut self, code: &str, span: Span) {
        let help = match regions::closest_region(code) {
            Some(best) => format!("did you mean `{best}`?"),
            None => "`fly platform regions` lists the region codes".to_string(),
        };
        self.error_help(span, format!("unknown Fly region {code:?}"), help);
    }

    /// `[build]`: the image, if given.
    fn read_build(&mut self, root: &Tbl) -> Option<(String, Span)> {
        let f = self.field(root, "build")?;
        let t = self.table(&f, "[build]")?;
        self.check_keys(&t, &keys::BUILD);
        let f = self.field(&t, "image")?;
        let image = self.string(&f)?;
        if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.invalid(&f, format!("invalid image reference {image:?}"));
            return None;
        }
        Some((image, f.span))
    }

    /// The image (default `flyio/postgres-flex:15`) and the PostgreSQL major
    /// version read from its tag.
    fn image_and_major(&mut self, image: Option<(String, Span)>) -> (String, u32) {
        let Some((image, span)) = image else {
            return (DEFAULT_IMAGE.to_string(), DEFAULT_PG_MAJOR);
        };
        match major_from_image(&image) {
            Ok(major) => (image, major.unwrap_or(DEFAULT_PG_MAJOR)),
            Err(tag) => {
                self.note(
                    span,
                    format!(
                        "cannot read a PostgreSQL major version from the image tag {tag:?}; assuming {DEFAULT_PG_MAJOR}"
                    ),
                );
                (image, DEFAULT_PG_MAJOR)
            }
        }
    }

    /// `[postgres]`; the bool says whether `instances` was given.
    fn read_postgres(&mut self, root: &Tbl, primary_region: &str) -> (PostgresConfig, bool) {
        let mut pg = PostgresConfig {
            instances: 1,
            sync_standbys: 0,
            read_replicas: BTreeMap::new(),
            operator_user: "postgres".to_string(),
            operator_password: None,
            database: None,
            port: DEFAULT_PORT,
            restore_from: None,
            users: Vec::new(),
            databases: Vec::new(),
        };
        let Some(f) = self.field(root, "postgres") else {
            return (pg, false);
        };
        let Some(t) = self.table(&f, "[postgres]") else {
            return (pg, false);
        };
        self.check_keys(&t, &keys::POSTGRES);
        let mut instances_set = false;
        if let Some(f) = self.field(&t, "instances") {
            instances_set = true;
            if let Some(n) = self.integer_in(&f, 1, i64::from(u32::MAX)) {
                pg.instances = u32::try_from(n).unwrap_or(1);
            }
        }
        if let Some(f) = self.field(&t, "sync_standbys") {
            if let Some(n) = self.integer_in(&f, 0, i64::from(u32::MAX)) {
                pg.sync_standbys = u32::try_from(n).unwrap_or(0);
            }
        }
        if let Some(f) = self.field(&t, "read_replicas") {
            pg.read_replicas = self.read_replicas(&f, primary_region);
        }
        if let Some(f) = self.field(&t, "operator_password") {
            if let Some(name) = self.string(&f) {
                pg.operator_password = self.secret_ref(&f, &name);
            }
        }
        if let Some(f) = self.field(&t, "database") {
            pg.database = self.identifier(&f, "database name");
        }
        if let Some((port, _)) = self.get_port(&t, "port") {
            pg.port = port;
        }
        if let Some(f) = self.field(&t, "restore_from") {
            if let Some(id) = self.string(&f) {
                let ok = !id.is_empty()
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if ok {
                    pg.restore_from = Some(id);
                } else {
                    self.invalid(&f, format!("invalid snapshot id {id:?}"));
                }
            }
        }
        if let Some(f) = self.field(&t, "users") {
            let mut seen = BTreeMap::new();
            for u in self.tables(&f, false) {
                if let Some(user) = self.read_user(&u, &mut seen) {
                    pg.users.push(user);
                }
            }
        }
        if let Some(f) = self.field(&t, "databases") {
            let mut seen = BTreeMap::new();
            for d in self.tables(&f, false) {
                if let Some(db) = self.read_database(&d, &mut seen) {
                    pg.databases.push(db);
                }
            }
        }
        (pg, instances_set)
    }

    fn read_replicas(&mut self, f: &Field, primary_region: &str) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        let Some(t) = self.table(f, "[postgres.read_replicas]") else {
            return out;
        };
        for (region, _) in t.t.iter() {
            let Some(entry) = self.field(&t, region) else {
                continue;
            };
            let mut ok = true;
            if !regions::is_region(region) {
                self.unknown_region(region, entry.key_span.clone());
                ok = false;
            } else if region == primary_region {
                self.error_help(
                    entry.key_span.clone(),
                    format!(
                        "read replicas must be outside the primary region ({primary_region:?})"
                    ),
                    "nodes in the primary region are set with `instances`",
                );
                ok = false;
            }
            let count = self.integer_in(&entry, 1, i64::from(u32::MAX));
            if let (true, Some(n)) = (ok, count) {
                out.insert(region.to_string(), u32::try_from(n).unwrap_or(1));
            }
        }
        out
    }

    /// A string holding a PostgreSQL identifier (database name).
    fn identifier(&mut self, f: &Field, what: &str) -> Option<String> {
        let name = self.string(f)?;
        match names::check_identifier(&name) {
            Ok(()) => Some(name),
            Err(why) => {
                self.invalid(f, format!("invalid {what} {name:?}: {why}"));
                None
            }
        }
    }

    /// A string holding a role name flyplan may create.
    fn role(&mut self, f: &Field) -> Option<String> {
        let name = self.string(f)?;
        match names::check_role_name(&name) {
            Ok(()) => Some(name),
            Err(why) => {
                self.invalid(f, format!("invalid user name {name:?}: {why}"));
                None
            }
        }
    }

    fn ensure(&mut self, t: &Tbl) -> Ensure {
        match self
            .get_choice(t, "ensure", &["present", "absent"])
            .as_deref()
        {
            Some("absent") => Ensure::Absent,
            _ => Ensure::Present,
        }
    }

    fn read_user(&mut self, t: &Tbl, seen: &mut BTreeMap<String, Span>) -> Option<UserConfig> {
        self.record(t);
        self.check_keys(t, &keys::USER);
        let name = match self.field(t, "name") {
            Some(f) => {
                let name = self.role(&f);
                if let Some(n) = &name {
                    self.unique(seen, n, f.span.clone(), "user");
                }
                name
            }
            None => {
                self.error(
                    t.span.clone(),
                    format!("missing key `name` in `{}`", t.shown),
                );
                None
            }
        };
        let mut user = UserConfig {
            name: name.clone().unwrap_or_default(),
            ensure: self.ensure(t),
            login: self.get_bool(t, "login").unwrap_or(true),
            superuser: self.get_bool(t, "superuser").unwrap_or(false),
            createdb: self.get_bool(t, "createdb").unwrap_or(false),
            createrole: self.get_bool(t, "createrole").unwrap_or(false),
            replication: self.get_bool(t, "replication").unwrap_or(false),
            connection_limit: -1,
            member_of: Vec::new(),
            password_secret: None,
        };
        if let Some(f) = self.field(t, "connection_limit") {
            if let Some(n) = self.integer_in(&f, -1, i64::from(i32::MAX)) {
                user.connection_limit = i32::try_from(n).unwrap_or(-1);
            }
        }
        if let Some(f) = self.field(t, "member_of") {
            user.member_of = self.member_of(&f);
        }
        user.password_secret = self.user_password(t);
        name.map(|_| user)
    }

    fn member_of(&mut self, f: &Field) -> Vec<String> {
        let Some(array) = f.item.as_array() else {
            let found = a_type(f.item);
            self.invalid_help(
                f,
                format!("`{}` must be an array of role names, found {found}", f.path),
                "e.g. member_of = [\"pg_read_all_data\"]",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in array.iter().enumerate() {
            let span = value_span(v, &f.span);
            match v.as_str() {
                Some(role) => match names::check_identifier(role) {
                    Ok(()) => out.push(role.to_string()),
                    Err(why) => self.error(span, format!("invalid role name {role:?}: {why}")),
                },
                None => self.error(
                    span,
                    format!(
                        "`{}[{i}]` must be a string, found {}",
                        f.path,
                        a_type(&Item::Value(v.clone()))
                    ),
                ),
            }
        }
        out
    }

    /// `password = { secret = "NAME" }` or `password_secret = "NAME"`.
    fn user_password(&mut self, t: &Tbl) -> Option<String> {
        let canonical = t.child("password_secret");
        let mut found: Option<(String, Span)> = None;
        if let Some(f) = self.field(t, "password") {
            if let Some(pt) = self.table(&f, "password = { secret = \"NAME\" }") {
                self.check_keys(&pt, &keys::USER_PASSWORD);
                match self.field(&pt, "secret") {
                    Some(sf) => {
                        if let Some(name) = self.string(&sf) {
                            let span = sf.span.clone();
                            let sf = Field {
                                path: canonical.clone(),
                                ..sf
                            };
                            found = self.secret_ref(&sf, &name).map(|n| (n, span));
                        }
                    }
                    None => self.error_help(
                        f.span.clone(),
                        format!("`{}` needs a `secret`", f.path),
                        "write password = { secret = \"NAME\" } with NAME declared in [secrets]",
                    ),
                }
            }
        }
        if let Some(f) = self.field(t, "password_secret") {
            if found.is_some() {
                self.invalid_help(
                    &f,
                    "the password is set twice, by `password` and `password_secret`",
                    "keep one of them",
                );
                return found.map(|(n, _)| n);
            }
            if let Some(name) = self.string(&f) {
                found = self.secret_ref(&f, &name).map(|n| (n, f.span.clone()));
            }
        }
        if let Some((_, span)) = &found {
            if self.spans.get(&canonical).is_none() {
                self.spans.insert(canonical, span.clone());
            }
        }
        found.map(|(n, _)| n)
    }

    fn read_database(
        &mut self,
        t: &Tbl,
        seen: &mut BTreeMap<String, Span>,
    ) -> Option<DatabaseConfig> {
        self.record(t);
        self.check_keys(t, &keys::DATABASE);
        let name = match self.field(t, "name") {
            Some(f) => {
                let name = self.identifier(&f, "database name");
                if let Some(n) = &name {
                    self.unique(seen, n, f.span.clone(), "database");
                }
                name
            }
            None => {
                self.error(
                    t.span.clone(),
                    format!("missing key `name` in `{}`", t.shown),
                );
                None
            }
        };
        let owner = match self.field(t, "owner") {
            Some(f) => self.identifier(&f, "owner"),
            None => None,
        };
        let ensure = self.ensure(t);
        Some(DatabaseConfig {
            name: name?,
            ensure,
            owner,
        })
    }

    /// `[secrets]`: name → source; never a value.
    fn read_secrets(&mut self, root: &Tbl) -> BTreeMap<String, SecretSource> {
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

    fn secret_source(&mut self, t: &Tbl, name: &str) -> Option<SecretSource> {
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

    /// `[[mounts]]` or a single `[mounts]`; one default mount when absent.
    fn read_mounts(&mut self, root: &Tbl) -> Vec<MountConfig> {
        let entries = match self.field(root, "mounts") {
            Some(f) => self.tables(&f, true),
            None => Vec::new(),
        };
        let mut out: Vec<MountConfig> = entries.iter().map(|t| self.read_mount(t)).collect();
        if out.is_empty() {
            out.push(default_mount());
        }
        out
    }

    fn read_mount(&mut self, t: &Tbl) -> MountConfig {
        self.record(t);
        self.check_keys(t, &keys::MOUNT);
        let mut m = default_mount();
        if let Some(f) = self.field(t, "source") {
            if let Some(s) = self.string(&f) {
                match names::check_volume_name(&s) {
                    Ok(()) => m.source = s,
                    Err(why) => self.invalid(&f, format!("invalid volume name {s:?}: {why}")),
                }
            }
        }
        if let Some(f) = self.field(t, "destination") {
            if let Some(d) = self.string(&f) {
                let ok = d.starts_with('/')
                    && d.len() > 1
                    && !d.chars().any(|c| c.is_whitespace() || c.is_control());
                if ok {
                    m.destination = d;
                } else {
                    self.invalid(
                        &f,
                        format!(
                            "`{}` must be an absolute path such as \"/data\", found {d:?}",
                            f.path
                        ),
                    );
                }
            }
        }
        if let Some(f) = self.field(t, "initial_size") {
            let size = match f.item.as_value() {
                Some(Value::Integer(n)) => u64::try_from(*n.value()).ok().filter(|n| *n > 0),
                Some(Value::String(s)) => units::parse_size_gb(s.value()),
                _ => None,
            };
            match size {
                Some(gb) => m.initial_size_gb = gb,
                None => self.invalid_help(
                    &f,
                    format!("`{}` must be a size such as \"10gb\" or \"500mb\"", f.path),
                    "a bare integer is a number of GB",
                ),
            }
        }
        if let Some(f) = self.field(t, "snapshot_retention") {
            if let Some(n) = self.integer(&f) {
                match u32::try_from(n).ok().filter(|n| (1..=60).contains(n)) {
                    Some(days) => m.snapshot_retention = days,
                    None => self.invalid(
                        &f,
                        format!("snapshot_retention must be between 1 and 60 days, found {n}"),
                    ),
                }
            }
        }
        if let Some(b) = self.get_bool(t, "scheduled_snapshots") {
            m.scheduled_snapshots = b;
        }
        if let Some(f) = self.field(t, "snapshot_time") {
            if let Some(s) = self.string(&f) {
                if units::is_hh_mm(&s) {
                    m.snapshot_time = s;
                } else {
                    self.invalid_help(
                        &f,
                        format!(
                            "`{}` must be a UTC time of day \"HH:MM\", found {s:?}",
                            f.path
                        ),
                        "e.g. snapshot_time = \"03:30\"",
                    );
                }
            }
        }
        m
    }

    /// `[[vm]]` or `[vm]`: every entry is checked, the first one sizes the nodes.
    fn read_vm(&mut self, root: &Tbl) -> VmConfig {
        let entries = match self.field(root, "vm") {
            Some(f) => self.tables(&f, true),
            None => Vec::new(),
        };
        let mut first = None;
        for (i, t) in entries.iter().enumerate() {
            let vm = self.read_vm_entry(t);
            if i == 0 {
                for key in ["size", "memory", "memory_mb", "cpus", "cpu_kind"] {
                    if let Some(span) = self.spans.get(&t.child(key)) {
                        self.spans.insert(format!("vm.{key}"), span);
                    }
                }
                first = Some(vm);
            } else {
                self.note(
                    t.span.clone(),
                    "flyplan sizes every node with the first [[vm]]; this one is ignored",
                );
            }
        }
        first.unwrap_or_else(default_vm)
    }

    fn read_vm_entry(&mut self, t: &Tbl) -> VmConfig {
        self.record(t);
        self.check_keys(t, &keys::VM);
        let mut vm = default_vm();
        if let Some(f) = self.field(t, "size") {
            if let Some(s) = self.string(&f) {
                let ok = !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if ok {
                    vm.size = s;
                } else {
                    self.invalid_help(
                        &f,
                        format!("invalid VM size {s:?}"),
                        "use a Fly size preset such as \"shared-cpu-1x\" or \"performance-2x\"",
                    );
                }
            }
        }
        let memory = self.field(t, "memory");
        let memory_mb = self.field(t, "memory_mb");
        if let (Some(_), Some(second)) = (&memory, &memory_mb) {
            self.invalid_help(
                second,
                "memory is set twice, by `memory` and `memory_mb`",
                "keep one of them",
            );
        } else if let Some(f) = memory.or(memory_mb) {
            let mb = match f.item.as_value() {
                Some(Value::Integer(n)) => u32::try_from(*n.value()).ok().filter(|n| *n > 0),
                Some(Value::String(s)) if f.path.ends_with(".memory") => {
                    units::parse_memory_mb(s.value())
                }
                _ => None,
            };
            match mb {
                Some(mb) => vm.memory_mb = mb,
                None => self.invalid_help(
                    &f,
                    format!(
                        "`{}` must be an amount of memory such as \"512mb\" or \"2gb\"",
                        f.path
                    ),
                    "a bare integer is a number of MB",
                ),
            }
        }
        if let Some(f) = self.field(t, "cpus") {
            if let Some(n) = self.integer_in(&f, 1, 256) {
                vm.cpus = u32::try_from(n).unwrap_or(1);
            }
        }
        if let Some(kind) = self.get_choice(t, "cpu_kind", &["shared", "performance"]) {
            vm.cpu_kind = kind;
        }
        vm
    }

    /// `[[attachments]]`: apps that get a database, a user and a URL.
    fn read_attachments(&mut self, root: &Tbl) -> Vec<AttachmentConfig> {
        let Some(f) = self.field(root, "attachments") else {
            return Vec::new();
        };
        let mut seen = BTreeMap::new();
        let mut out = Vec::new();
        for t in self.tables(&f, false) {
            if let Some(a) = self.read_attachment(&t, &mut seen) {
                out.push(a);
            }
        }
        out
    }

    fn read_attachment(
        &mut self,
        t: &Tbl,
        seen: &mut BTreeMap<String, Span>,
    ) -> Option<AttachmentConfig> {
        self.record(t);
        self.check_keys(t, &keys::ATTACHMENT);
        let app = match self.field(t, "app") {
            None => {
                self.error_help(
                    t.span.clone(),
                    format!("missing key `app` in `{}`", t.shown),
                    "name the Fly app that gets the database, e.g. app = \"myapp\"",
                );
                None
            }
            Some(f) => match self.string(&f) {
                Some(app) => match names::check_fly_app_name(&app) {
                    Ok(()) => {
                        if let Some(first) = seen.get(&app) {
                            let line =
                                Diagnostic::at(self.path, self.source, first.clone(), "").line;
                            self.error_help(
                                f.span.clone(),
                                format!("app `{app}` is attached twice"),
                                format!("the first attachment is on line {line}"),
                            );
                        } else {
                            seen.insert(app.clone(), f.span.clone());
                        }
                        Some((app, f.span.clone()))
                    }
                    Err(why) => {
                        self.invalid(&f, format!("invalid Fly app name {app:?}: {why}"));
                        None
                    }
                },
                None => None,
            },
        };
        let database = match self.field(t, "database") {
            Some(f) => self.identifier(&f, "database name"),
            None => app.as_ref().and_then(|(app, span)| {
                self.derived(app, span.clone(), "database", names::check_identifier)
            }),
        };
        let user = match self.field(t, "user") {
            Some(f) => self.role(&f),
            None => app.as_ref().and_then(|(app, span)| {
                self.derived(app, span.clone(), "user", names::check_role_name)
            }),
        };
        let variable = match self.get_string(t, "variable") {
            Some((v, _)) if names::is_secret_name(&v) => Some(v),
            Some((v, span)) => {
                self.poisoned.insert(t.child("variable"));
                self.error_help(
                    span,
                    format!("invalid variable name {v:?}"),
                    "use uppercase letters, digits and `_`, e.g. DATABASE_URL",
                );
                None
            }
            None => Some("DATABASE_URL".to_string()),
        };
        let superuser = self.get_bool(t, "superuser").unwrap_or(true);
        Some(AttachmentConfig {
            app: app?.0,
            database: database?,
            user: user?,
            variable: variable?,
            superuser,
        })
    }

    /// The database or user name derived from an attachment's app name.
    fn derived(
        &mut self,
        app: &str,
        app_span: Span,
        key: &str,
        check: fn(&str) -> Result<(), &'static str>,
    ) -> Option<String> {
        let name = names::identifier_for_app(app);
        match check(&name) {
            Ok(()) => Some(name),
            Err(why) => {
                self.error_help(
                    app_span,
                    format!(
                        "the {key} name {name:?} derived from app {app:?} cannot be used: {why}"
                    ),
                    format!("set `{key}` in this attachment"),
                );
                None
            }
        }
    }

    /// `[services.postgres]` and its processes and env; returns the image.
    fn read_services_postgres(
        &mut self,
        sp: &Tbl,
        pg: &mut PostgresConfig,
        secrets: &mut BTreeMap<String, SecretSource>,
    ) -> Option<(String, Span)> {
        self.check_keys(sp, &keys::SERVICES_POSTGRES);
        let image = match self.get_string(sp, "image") {
            Some((img, span)) if !img.is_empty() && !img.chars().any(char::is_whitespace) => {
                Some((img, span))
            }
            Some((img, span)) => {
                self.poisoned.insert("services.postgres.image".to_string());
                self.error(span, format!("invalid image reference {img:?}"));
                None
            }
            None => None,
        };
        let internal_port = self.get_port(sp, "internal_port");
        self.get_choice(
            sp,
            "restart_policy",
            &["no", "always", "on-failure", "fail"],
        );
        self.get_bool(sp, "disable_proxy");
        if let Some(f) = self.field(sp, "processes") {
            for p in self.tables(&f, false) {
                self.record(&p);
                self.check_keys(&p, &keys::SERVICES_POSTGRES_PROCESS);
                for key in ["name", "command"] {
                    match self.field(&p, key) {
                        Some(f) => {
                            if let Some(s) = self.string(&f) {
                                if s.trim().is_empty() {
                                    self.invalid(&f, format!("`{}` must not be empty", f.path));
                                }
                            }
                        }
                        None => self.error(
                            p.span.clone(),
                            format!("missing key `{key}` in `{}`", p.shown),
                        ),
                    }
                }
            }
        }
        let mut pg_port: Option<(u16, Span)> = None;
        if let Some(f) = self.field(sp, "env") {
            let mut seen: BTreeMap<String, Span> = BTreeMap::new();
            for e in self.tables(&f, true) {
                self.record(&e);
                for (var, _) in e.t.iter() {
                    let Some(v) = self.field(&e, var) else {
                        continue;
                    };
                    if !names::is_env_var_name(var) {
                        self.error(
                            v.key_span.clone(),
                            format!("invalid environment variable name {var:?}"),
                        );
                        continue;
                    }
                    if let Some(first) = seen.get(var) {
                        let line = Diagnostic::at(self.path, self.source, first.clone(), "").line;
                        self.error_help(
                            v.key_span.clone(),
                            format!("`{var}` is set twice in [[services.postgres.env]]"),
                            format!("the first one is on line {line}"),
                        );
                        continue;
                    }
                    seen.insert(var.to_string(), v.key_span.clone());
                    match var {
                        "PG_PORT" => pg_port = self.env_port(&v).map(|p| (p, v.span.clone())),
                        "PG_USER" => {
                            if let Some(user) = self.role(&v) {
                                self.spans.insert("postgres.operator_user", v.span.clone());
                                pg.operator_user = user;
                            }
                        }
                        "PG_DATABASE" => {
                            if let Some(db) = self.identifier(&v, "database name") {
                                self.dialect_conflict(
                                    pg.database.is_some(),
                                    &v,
                                    "postgres.database",
                                );
                                self.spans.insert("postgres.database", v.span.clone());
                                pg.database = Some(db);
                            }
                        }
                        "PG_PASSWORD" => {
                            if let Some(name) = self.env_password(&v) {
                                self.dialect_conflict(
                                    pg.operator_password.is_some(),
                                    &v,
                                    "postgres.operator_password",
                                );
                                self.spans
                                    .insert("postgres.operator_password", v.span.clone());
                                if !secrets.contains_key(&name) {
                                    self.spans.insert(format!("secrets.{name}"), v.span.clone());
                                    secrets.insert(
                                        name.clone(),
                                        SecretSource::Env { var: name.clone() },
                                    );
                                }
                                pg.operator_password = Some(name);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let port_from_postgres = self.spans.get("postgres.port").is_some();
        match (pg_port, internal_port) {
            (Some((p, span)), Some((ip, _))) if p != ip => self.error_help(
                span,
                format!("PG_PORT ({p}) differs from `services.postgres.internal_port` ({ip})"),
                "use the same port in both",
            ),
            (Some((p, span)), _) | (None, Some((p, span))) => {
                if port_from_postgres && p != pg.port {
                    self.error_help(
                        span,
                        format!(
                            "the port is set twice, here ({p}) and in `postgres.port` ({})",
                            pg.port
                        ),
                        "keep one of them",
                    );
                } else {
                    self.spans.insert("postgres.port", span);
                    pg.port = p;
                }
            }
            (None, None) => {}
        }
        image
    }

    fn dialect_conflict(&mut self, already: bool, f: &Field, native: &str) {
        if already {
            self.invalid_help(
                f,
                format!("`{native}` and this variable both set the same thing"),
                "keep one of them",
            );
        }
    }

    fn env_port(&mut self, f: &Field) -> Option<u16> {
        let port = match f.item.as_value() {
            Some(Value::Integer(n)) => u16::try_from(*n.value()).ok(),
            Some(Value::String(s)) => s.value().parse::<u16>().ok(),
            _ => None,
        };
        match port.filter(|p| *p > 0) {
            Some(p) => Some(p),
            None => {
                self.invalid(f, "PG_PORT must be a port number such as \"5432\"");
                None
            }
        }
    }

    /// `PG_PASSWORD = "$NAME"` (or `"${NAME}"`): the secret NAME, read from
    /// the environment variable NAME. A literal value is refused.
    fn env_password(&mut self, f: &Field) -> Option<String> {
        let value = self.string(f)?;
        let Some(reference) = value.strip_prefix('$') else {
            self.invalid_help(
                f,
                "a password must not be written in fly.toml",
                "put the password in a secret: PG_PASSWORD = \"$PG_PASSWORD\"",
            );
            return None;
        };
        let name = reference
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or(reference);
        if !names::is_secret_name(name) {
            self.invalid_help(
                f,
                format!("invalid secret reference {value:?}"),
                "refer to a secret by name, e.g. PG_PASSWORD = \"$PG_PASSWORD\"",
            );
            return None;
        }
        Some(name.to_string())
    }
}

fn default_mount() -> MountConfig {
    MountConfig {
        source: "pg_data".to_string(),
        destination: "/data".to_string(),
        initial_size_gb: 1,
        snapshot_retention: 5,
        scheduled_snapshots: true,
        snapshot_time: "00:00".to_string(),
    }
}

fn default_vm() -> VmConfig {
    VmConfig {
        size: "shared-cpu-1x".to_string(),
        memory_mb: 256,
        cpus: 1,
        cpu_kind: "shared".to_string(),
    }
}

/// The PostgreSQL major version in an image tag: `flyio/postgres-flex:15.3`
/// → 15, `postgres:16-alpine` → 16, `timescale/timescaledb-ha:pg15-ts2.11`
/// → 15. `Ok(None)` when there is no tag; `Err(tag)` when the tag names no
/// plausible version.
pub(crate) fn major_from_image(image: &str) -> Result<Option<u32>, String> {
    let image = image.split('@').next().unwrap_or(image);
    let name = image.rsplit('/').next().unwrap_or(image);
    let Some((_, tag)) = name.split_once(':') else {
        return Ok(None);
    };
    let digits = tag.strip_prefix("pg").unwrap_or(tag);
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end]
        .parse::<u32>()
        .ok()
        .filter(|m| (9..=99).contains(m))
        .map(Some)
        .ok_or_else(|| tag.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_major_version_comes_from_the_image_tag() {
        assert_eq!(major_from_image("flyio/postgres-flex:15.3"), Ok(Some(15)));
        assert_eq!(major_from_image("postgres:16-alpine"), Ok(Some(16)));
        assert_eq!(major_from_image("flyio/postgres:14"), Ok(Some(14)));
        assert_eq!(major_from_image("postgres:18"), Ok(Some(18)));
        assert_eq!(
            major_from_image("timescale/timescaledb-ha:pg15-ts2.11"),
            Ok(Some(15))
        );
        assert_eq!(
            major_from_image("registry.example:5000/pg:13"),
            Ok(Some(13))
        );
        assert_eq!(major_from_image("flyio/postgres-flex"), Ok(None));
        assert_eq!(major_from_image("registry.example:5000/pg"), Ok(None));
        assert_eq!(major_from_image("pg:latest"), Err("latest".to_string()));
        assert_eq!(
            major_from_image("imgineapi/imagineapi-postgres:0.1"),
            Err("0.1".to_string())
        );
    }
}
