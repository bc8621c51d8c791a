//! `[postgres]`: topology, operator, and the managed `[[postgres.users]]`
//! and `[[postgres.databases]]`.

use super::*;

impl Reader<'_> {
    /// `[postgres]`; `instances_declared` and `read_replicas_declared` say
    /// which counts were given.
    pub(super) fn read_postgres(&mut self, root: &Tbl, primary_region: &str) -> PostgresConfig {
        let mut pg = PostgresConfig {
            instances: 1,
            instances_declared: false,
            sync_standbys: 0,
            sync_standbys_declared: false,
            read_replicas: BTreeMap::new(),
            read_replicas_declared: false,
            operator_user: "postgres".to_string(),
            operator_password: None,
            database: None,
            port: DEFAULT_PORT,
            restore_from: None,
            backup: None,
            restore: None,
            users: Vec::new(),
            databases: Vec::new(),
            parameters: BTreeMap::new(),
        };
        let Some(f) = self.field(root, "postgres") else {
            return pg;
        };
        let Some(t) = self.table(&f, "[postgres]") else {
            return pg;
        };
        self.check_keys(&t, &keys::POSTGRES);
        if let Some(f) = self.field(&t, "instances") {
            pg.instances_declared = true;
            if let Some(n) = self.integer_in(&f, 1, i64::from(u32::MAX)) {
                pg.instances = u32::try_from(n).unwrap_or(1);
            }
        }
        if let Some(f) = self.field(&t, "sync_standbys") {
            pg.sync_standbys_declared = true;
            if let Some(n) = self.integer_in(&f, 0, i64::from(u32::MAX)) {
                pg.sync_standbys = u32::try_from(n).unwrap_or(0);
            }
        }
        if let Some(f) = self.field(&t, "read_replicas") {
            pg.read_replicas_declared = true;
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
        if let Some(f) = self.field(&t, "backup") {
            pg.backup = self.read_backup(&f);
        }
        if let Some(f) = self.field(&t, "restore") {
            pg.restore = self.read_restore(&f);
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
        if let Some(f) = self.field(&t, "parameters") {
            pg.parameters = self.read_parameters(&f);
        }
        pg
    }

    pub(super) fn read_replicas(
        &mut self,
        f: &Field,
        primary_region: &str,
    ) -> BTreeMap<String, u32> {
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
    pub(super) fn identifier(&mut self, f: &Field, what: &str) -> Option<String> {
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
    pub(super) fn role(&mut self, f: &Field) -> Option<String> {
        let name = self.string(f)?;
        match names::check_role_name(&name) {
            Ok(()) => Some(name),
            Err(why) => {
                self.invalid(f, format!("invalid user name {name:?}: {why}"));
                None
            }
        }
    }

    pub(super) fn ensure(&mut self, t: &Tbl) -> Ensure {
        match self
            .get_choice(t, "ensure", &["present", "absent"])
            .as_deref()
        {
            Some("absent") => Ensure::Absent,
            _ => Ensure::Present,
        }
    }

    pub(super) fn read_user(
        &mut self,
        t: &Tbl,
        seen: &mut BTreeMap<String, Span>,
    ) -> Option<UserConfig> {
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

    pub(super) fn member_of(&mut self, f: &Field) -> Vec<String> {
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
    pub(super) fn user_password(&mut self, t: &Tbl) -> Option<String> {
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

    pub(super) fn read_database(
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
}
