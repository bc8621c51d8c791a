//! `[[attachments]]`: consumer apps that get a database, a user and a
//! connection URL, with Fly's naming defaults.

use super::*;

impl Reader<'_> {
    /// `[[attachments]]`: apps that get a database, a user and a URL.
    pub(super) fn read_attachments(&mut self, root: &Tbl) -> Vec<AttachmentConfig> {
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

    pub(super) fn read_attachment(
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
    pub(super) fn derived(
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
}
