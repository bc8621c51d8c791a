//! The services dialect of the seed documents: `[services.postgres]` with
//! `[[services.postgres.processes]]` and `[[services.postgres.env]]`, mapped
//! onto the same [`Config`](crate::config::Config) as the native form.

use super::*;

impl Reader<'_> {
    /// `services`: the `[services.postgres]` table of the services dialect,
    /// or ordinary Fly services (ignored with a note).
    pub(super) fn read_services<'d>(&mut self, root: &Tbl<'d>) -> Option<Tbl<'d>> {
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

    /// `[services.postgres]` and its processes and env; returns the image.
    pub(super) fn read_services_postgres(
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

    pub(super) fn dialect_conflict(&mut self, already: bool, f: &Field, native: &str) {
        if already {
            self.invalid_help(
                f,
                format!("`{native}` and this variable both set the same thing"),
                "keep one of them",
            );
        }
    }

    pub(super) fn env_port(&mut self, f: &Field) -> Option<u16> {
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
    pub(super) fn env_password(&mut self, f: &Field) -> Option<String> {
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
