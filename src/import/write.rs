//! The fly.toml document of an [`Observed`] cluster, written with
//! toml_edit: keys in the order of the design's example, a comment above
//! each section saying what was observed, and keys indented as Fly writes
//! them.

use toml_edit::{value, Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use super::observed::{Observed, OperatorSeen, Seen};
use crate::model::{Address, MachineSpec};

/// Tables are written in the order they are made.
struct Doc {
    doc: DocumentMut,
    position: isize,
}

impl Doc {
    fn next(&mut self) -> isize {
        self.position += 1;
        self.position
    }

    fn table(&mut self, comment: &[String]) -> Table {
        let mut t = Table::new();
        t.set_position(Some(self.next()));
        t.decor_mut().set_prefix(comment_block(comment));
        t
    }
}

/// `# line` for each line, after a blank line.
fn comment_block(lines: &[String]) -> String {
    let mut s = String::from("\n");
    for l in lines {
        s.push_str("# ");
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Put `key = v` in `t`, indented, with comment lines above it.
fn put(t: &mut Table, key: &str, v: impl Into<Value>, comment: &[String]) {
    t.insert(key, value(v));
    if let Some(mut k) = t.key_mut(key) {
        let mut prefix = String::new();
        for l in comment {
            prefix.push_str("  # ");
            prefix.push_str(l);
            prefix.push('\n');
        }
        prefix.push_str("  ");
        k.leaf_decor_mut().set_prefix(prefix);
    }
}

fn nodes(n: usize) -> String {
    if n == 1 {
        "1 node".to_string()
    } else {
        format!("{n} nodes")
    }
}

/// "on 3 of 3 nodes" or "on 2 of 3 nodes (the others differ)".
fn agreement<T>(s: &Seen<T>, what: &str) -> String {
    if s.agreeing == s.of {
        format!("on every {what} ({})", s.of)
    } else {
        format!(
            "on {} of {} {what}s; the others differ and the plan will update them",
            s.agreeing, s.of
        )
    }
}

fn addresses(ms: &[MachineSpec]) -> String {
    ms.iter()
        .map(|m| Address::machine(&m.region, m.index).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Memory as fly.toml writes it: "512mb", "2gb".
fn memory(mb: u64) -> String {
    if mb % 1024 == 0 {
        format!("{}gb", mb / 1024)
    } else {
        format!("{mb}mb")
    }
}

fn header(o: &Observed) -> Vec<String> {
    vec![
        format!(
            "fly.toml of app {}, written by `flyplan import` from what the live cluster showed.",
            o.app
        ),
        "Review it: `flyplan plan` against the same cluster says \"No changes\".".to_string(),
        "Secrets are named, never copied: export each variable of [secrets] first.".to_string(),
    ]
}

fn postgres_comment(o: &Observed) -> Vec<String> {
    let mut lines = Vec::new();
    let address = |m: &MachineSpec| Address::machine(&m.region, m.index);
    let is_leader = |m: &MachineSpec| o.leader.as_ref() == Some(&address(m));
    let standbys: Vec<MachineSpec> = o
        .candidates
        .iter()
        .filter(|m| !is_leader(m))
        .cloned()
        .collect();
    let mut first = format!(
        "{} observed in {}",
        nodes(o.candidates.len()),
        o.primary_region
    );
    let mut parts = Vec::new();
    if let Some(m) = o.candidates.iter().find(|m| is_leader(m)) {
        parts.push(format!("leader {}", address(m)));
    }
    if parts.is_empty() {
        parts.push(format!("no leader observed among {}", addresses(&standbys)));
    } else if !standbys.is_empty() {
        parts.push(format!("standbys {}", addresses(&standbys)));
    }
    if !o.candidates.is_empty() {
        first.push_str(": ");
        first.push_str(&parts.join("; "));
    }
    lines.push(first);
    let contiguous = o
        .candidates
        .iter()
        .enumerate()
        .all(|(i, m)| m.index as usize == i);
    if !contiguous {
        lines.push(format!(
            "their indexes are not 0..{}: the plan will renumber them",
            o.candidates.len()
        ));
    }
    match o.sync_standbys {
        Some(0) | None => lines.push("commits do not wait for a standby".to_string()),
        Some(n) => lines.push(format!("commits wait for {n} standby(s)")),
    }
    if o.replicas.is_empty() {
        lines.push("no read replica observed".to_string());
    } else {
        lines.push(format!(
            "read replicas observed: {}",
            addresses(&o.replicas)
        ));
    }
    if let Some(s) = &o.operator_password {
        lines.push(format!(
            "the password of user postgres is the value of secret {s}"
        ));
    }
    lines
}

/// `[services.postgres]` and its `[[services.postgres.env]]`: the one form
/// that names an operator other than `postgres`.
fn services(d: &mut Doc, o: &Observed, op: &OperatorSeen) {
    let mut comment = vec![format!(
        "the operator is role {}, not postgres: written in the [services.postgres] form that names it",
        op.user
    )];
    if let Some(image) = &o.image {
        comment.push(format!("image observed {}", agreement(image, "node")));
    }
    let mut sp = d.table(&comment);
    if let Some(image) = &o.image {
        put(&mut sp, "image", image.value.as_str(), &[]);
    }
    put(&mut sp, "internal_port", 5432_i64, &[]);
    let mut env = d.table(&[]);
    put(&mut env, "PG_USER", op.user.as_str(), &[]);
    if let Some(s) = &op.password {
        put(&mut env, "PG_PASSWORD", format!("${s}"), &[]);
    }
    if let Some(db) = &op.database {
        put(&mut env, "PG_DATABASE", db.as_str(), &[]);
    }
    let mut envs = ArrayOfTables::new();
    envs.push(env);
    sp.insert("env", Item::ArrayOfTables(envs));
    let mut services = Table::new();
    services.set_implicit(true);
    services.insert("postgres", Item::Table(sp));
    d.doc.insert("services", Item::Table(services));
}

/// The whole document.
pub fn document(o: &Observed) -> DocumentMut {
    let mut d = Doc {
        doc: DocumentMut::new(),
        position: 0,
    };
    let root = d.doc.as_table_mut();
    root.insert("app", value(o.app.as_str()));
    root.insert("primary_region", value(o.primary_region.as_str()));
    if let Some(mut k) = root.key_mut("app") {
        k.leaf_decor_mut().set_prefix(
            header(o)
                .iter()
                .map(|l| format!("# {l}\n"))
                .collect::<String>()
                + "\n",
        );
    }

    if let Some(op) = &o.operator {
        services(&mut d, o, op);
    } else if let Some(image) = &o.image {
        let mut t = d.table(&[format!("image observed {}", agreement(image, "node"))]);
        put(&mut t, "image", image.value.as_str(), &[]);
        d.doc.insert("build", Item::Table(t));
    }

    let mut pg = d.table(&postgres_comment(o));
    let instances = o.candidates.len().max(1) as i64;
    put(&mut pg, "instances", instances, &[]);
    put(
        &mut pg,
        "sync_standbys",
        o.sync_standbys.unwrap_or(0) as i64,
        &[],
    );
    let mut replicas = InlineTable::new();
    for (region, n) in o.replicas_by_region() {
        replicas.insert(region, Value::from(i64::from(n)));
    }
    put(&mut pg, "read_replicas", replicas, &[]);
    if let Some(s) = &o.operator_password {
        put(&mut pg, "operator_password", s.as_str(), &[]);
    }
    d.doc.insert("postgres", Item::Table(pg));

    if !o.secrets.is_empty() || !o.internal_secrets.is_empty() {
        let mut comment = vec![format!(
            "{} secret(s) observed on app {}; names and sources only, never values",
            o.secrets.len() + o.internal_secrets.len(),
            o.app
        )];
        if !o.internal_secrets.is_empty() {
            comment.push(format!(
                "left out, generated for postgres-flex and left alone by flyplan: {}",
                o.internal_secrets.join(", ")
            ));
        }
        let mut t = d.table(&comment);
        for s in &o.secrets {
            let mut source = InlineTable::new();
            source.insert("from_env", Value::from(s.name.as_str()));
            let why = if s.outside {
                format!(
                    "set outside flyplan: export {} with the value the cluster has now",
                    s.name
                )
            } else {
                format!(
                    "the value must come from ${}: export it with the value the cluster has now",
                    s.name
                )
            };
            put(&mut t, &s.name, source, &[why]);
        }
        d.doc.insert("secrets", Item::Table(t));
    }

    let mut mounts = ArrayOfTables::new();
    {
        let mut comment = vec![format!("{} volume(s) observed", o.volume_count)];
        if let Some(size) = &o.volume_size_gb {
            comment.push(format!("{} GB {}", size.value, agreement(size, "volume")));
        }
        match &o.policy {
            Some(p) => comment.push(format!(
                "snapshots: {}, kept {} day(s), due at {} UTC",
                if p.scheduled == Some(false) {
                    "not scheduled"
                } else {
                    "daily"
                },
                p.retention_days.unwrap_or(5),
                p.snapshot_time.as_deref().unwrap_or("00:00")
            )),
            None => comment.push("no snapshot policy observed: Fly's defaults".to_string()),
        }
        let mut t = d.table(&comment);
        let name = o
            .volume_name
            .as_ref()
            .map_or("pg_data", |s| s.value.as_str());
        put(&mut t, "source", name, &[]);
        put(&mut t, "destination", "/data", &[]);
        if let Some(size) = &o.volume_size_gb {
            put(&mut t, "initial_size", format!("{}gb", size.value), &[]);
        }
        if let Some(p) = &o.policy {
            if let Some(days) = p.retention_days {
                put(&mut t, "snapshot_retention", days as i64, &[]);
            }
            if let Some(on) = p.scheduled {
                put(&mut t, "scheduled_snapshots", on, &[]);
            }
            if let Some(at) = &p.snapshot_time {
                put(&mut t, "snapshot_time", at.as_str(), &[]);
            }
        }
        mounts.push(t);
    }
    d.doc.insert("mounts", Item::ArrayOfTables(mounts));

    if o.vm_size.is_some() || o.memory_mb.is_some() {
        let mut comment = Vec::new();
        if let Some(s) = &o.vm_size {
            comment.push(format!("size {} {}", s.value, agreement(s, "node")));
        }
        if let Some(m) = &o.memory_mb {
            comment.push(format!("{} MB of memory {}", m.value, agreement(m, "node")));
        }
        let mut t = d.table(&comment);
        if let Some(s) = &o.vm_size {
            put(&mut t, "size", s.value.as_str(), &[]);
        }
        if let Some(m) = &o.memory_mb {
            put(&mut t, "memory", memory(m.value), &[]);
        }
        if let Some(c) = &o.cpus {
            put(&mut t, "cpus", i64::from(c.value), &[]);
        }
        if let Some(k) = &o.cpu_kind {
            put(&mut t, "cpu_kind", k.value.as_str(), &[]);
        }
        let mut vm = ArrayOfTables::new();
        vm.push(t);
        d.doc.insert("vm", Item::ArrayOfTables(vm));
    }

    if !o.attachments.is_empty() {
        let mut list = ArrayOfTables::new();
        for (app, a) in &o.attachments {
            let mut t = d.table(&[format!(
                "attached: {} on app {app}, user {}, database {}{}",
                a.variable,
                a.user,
                a.database,
                if a.superuser == Some(false) {
                    ", read/write grants only"
                } else {
                    ", superuser"
                }
            )]);
            put(&mut t, "app", app.as_str(), &[]);
            put(&mut t, "database", a.database.as_str(), &[]);
            put(&mut t, "user", a.user.as_str(), &[]);
            put(&mut t, "variable", a.variable.as_str(), &[]);
            put(&mut t, "superuser", a.superuser.unwrap_or(true), &[]);
            list.push(t);
        }
        d.doc.insert("attachments", Item::ArrayOfTables(list));
    }

    let pg = d
        .doc
        .get_mut("postgres")
        .and_then(Item::as_table_mut)
        .expect("[postgres] was written");
    let mut position = d.position;
    let mut at = || {
        position += 1;
        position
    };
    if o.roles_left_out {
        let prefix = pg
            .decor()
            .prefix()
            .and_then(|p| p.as_str())
            .unwrap_or("")
            .to_string();
        pg.decor_mut().set_prefix(format!(
            "{prefix}# roles and databases left out (--no-roles): flyplan leaves undeclared ones alone\n"
        ));
    }
    if !o.users.is_empty() {
        let mut list = ArrayOfTables::new();
        for (name, u) in &o.users {
            let mut t = Table::new();
            t.set_position(Some(at()));
            let mut what = vec![if u.login {
                "can log in"
            } else {
                "cannot log in"
            }
            .to_string()];
            if u.superuser {
                what.push("superuser".to_string());
            }
            if let Some(s) = &u.password_secret {
                what.push(format!("password from secret {s}"));
            } else if u.password.is_some() {
                what.push("a password no declared secret matches (left unmanaged)".to_string());
            }
            t.decor_mut().set_prefix(comment_block(&[format!(
                "role {name} observed: {}",
                what.join(", ")
            )]));
            put(&mut t, "name", name.as_str(), &[]);
            if !u.login {
                put(&mut t, "login", false, &[]);
            }
            for (key, on) in [
                ("superuser", Some(u.superuser)),
                ("createdb", u.createdb),
                ("createrole", u.createrole),
                ("replication", u.replication),
            ] {
                if on == Some(true) {
                    put(&mut t, key, true, &[]);
                }
            }
            if let Some(n) = u.connection_limit.filter(|n| *n != -1) {
                put(&mut t, "connection_limit", n, &[]);
            }
            if let Some(m) = u.member_of.as_ref().filter(|m| !m.is_empty()) {
                let roles: Array = m.iter().map(String::as_str).collect();
                put(&mut t, "member_of", roles, &[]);
            }
            if let Some(s) = &u.password_secret {
                put(&mut t, "password_secret", s.as_str(), &[]);
            }
            list.push(t);
        }
        pg.insert("users", Item::ArrayOfTables(list));
    }
    if !o.databases.is_empty() {
        let mut list = ArrayOfTables::new();
        for (name, owner) in &o.databases {
            let mut t = Table::new();
            t.set_position(Some(at()));
            t.decor_mut().set_prefix(comment_block(&[format!(
                "database {name} observed, owned by {owner}"
            )]));
            put(&mut t, "name", name.as_str(), &[]);
            put(&mut t, "owner", owner.as_str(), &[]);
            list.push(t);
        }
        pg.insert("databases", Item::ArrayOfTables(list));
    }
    if !o.parameters.is_empty() || !o.mixed_parameters.is_empty() {
        let mut comment = vec![format!(
            "{} setting(s) observed set with ALTER SYSTEM on every node",
            o.parameters.len()
        )];
        if !o.mixed_parameters.is_empty() {
            comment.push(format!(
                "left out, the nodes disagree (declare the value you want): {}",
                o.mixed_parameters.join(", ")
            ));
        }
        let mut t = Table::new();
        t.set_position(Some(at()));
        t.decor_mut().set_prefix(comment_block(&comment));
        for (name, v) in &o.parameters {
            put(&mut t, name, v.as_str(), &[]);
        }
        pg.insert("parameters", Item::Table(t));
    }
    if let Some(b) = &o.backup {
        let mut t = Table::new();
        t.set_position(Some(at()));
        t.decor_mut().set_prefix(comment_block(&[format!(
            "continuous archiving observed to the store in secret {}",
            b.secret
        )]));
        put(&mut t, "secret", b.secret.as_str(), &[]);
        put(&mut t, "archive_timeout", b.archive_timeout.as_str(), &[]);
        put(&mut t, "recovery_window", b.recovery_window.as_str(), &[]);
        put(
            &mut t,
            "full_backup_frequency",
            b.full_backup_frequency.as_str(),
            &[],
        );
        put(
            &mut t,
            "minimum_redundancy",
            i64::try_from(b.minimum_redundancy).unwrap_or(i64::MAX),
            &[],
        );
        pg.insert("backup", Item::Table(t));
    }
    d.doc
}
