//! The one list of keys the fly.toml reader accepts, per table: the keys
//! flyplan reads and the ordinary Fly app keys it accepts and ignores. The
//! parser checks every table against these lists, suggestions come from them,
//! and the JSON Schema is tested against them.

/// What flyplan does with a key it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// flyplan reads the key.
    Read,
    /// An ordinary Fly app key: accepted, ignored, and mentioned in a note.
    Ignored,
}

use KeyUse::{Ignored, Read};

/// The keys of one table. `path` names the table as in [`known_keys`]:
/// `""` for the top level, `postgres.users` for each `[[postgres.users]]`,
/// `secrets.*` for each secret's inline table.
#[derive(Debug)]
pub struct KeyTable {
    pub path: &'static str,
    pub keys: &'static [(&'static str, KeyUse)],
}

impl KeyTable {
    pub fn lookup(&self, key: &str) -> Option<KeyUse> {
        self.keys.iter().find(|(k, _)| *k == key).map(|(_, u)| *u)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.keys.iter().map(|(k, _)| *k)
    }

    pub fn read_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.keys
            .iter()
            .filter(|(_, u)| *u == Read)
            .map(|(k, _)| *k)
    }
}

pub const TOP: KeyTable = KeyTable {
    path: "",
    keys: &[
        ("app", Read),
        ("primary_region", Read),
        ("build", Read),
        ("postgres", Read),
        ("secrets", Read),
        ("mounts", Read),
        ("vm", Read),
        ("attachments", Read),
        // `[services.postgres]` is the services dialect; any other use of
        // `services` is an ordinary Fly app key.
        ("services", Read),
        ("kill_signal", Ignored),
        ("kill_timeout", Ignored),
        ("swap_size_mb", Ignored),
        ("console_command", Ignored),
        ("processes", Ignored),
        ("http_service", Ignored),
        ("checks", Ignored),
        ("machine_checks", Ignored),
        ("metrics", Ignored),
        ("deploy", Ignored),
        // `env.PRIMARY_REGION` stands in for a missing `primary_region`.
        ("env", Ignored),
        ("experimental", Ignored),
        ("statics", Ignored),
        ("files", Ignored),
        ("restart", Ignored),
        ("labels", Ignored),
        ("org", Ignored),
        ("host_dedication_id", Ignored),
        ("auto_stop_machines", Ignored),
        ("auto_start_machines", Ignored),
    ],
};

pub const BUILD: KeyTable = KeyTable {
    path: "build",
    keys: &[
        ("image", Read),
        ("dockerfile", Ignored),
        ("ignorefile", Ignored),
        ("args", Ignored),
        ("build-target", Ignored),
        ("builder", Ignored),
        ("buildpacks", Ignored),
        ("builtin", Ignored),
        ("settings", Ignored),
        ("compress", Ignored),
        ("compression", Ignored),
    ],
};

pub const POSTGRES: KeyTable = KeyTable {
    path: "postgres",
    keys: &[
        ("instances", Read),
        ("sync_standbys", Read),
        ("read_replicas", Read),
        ("operator_password", Read),
        ("database", Read),
        ("port", Read),
        ("restore_from", Read),
        ("backup", Read),
        ("restore", Read),
        ("users", Read),
        ("databases", Read),
        ("parameters", Read),
    ],
};

pub const USER: KeyTable = KeyTable {
    path: "postgres.users",
    keys: &[
        ("name", Read),
        ("ensure", Read),
        ("login", Read),
        ("superuser", Read),
        ("createdb", Read),
        ("createrole", Read),
        ("replication", Read),
        ("connection_limit", Read),
        ("member_of", Read),
        ("password", Read),
        ("password_secret", Read),
    ],
};

pub const USER_PASSWORD: KeyTable = KeyTable {
    path: "postgres.users.password",
    keys: &[("secret", Read)],
};

pub const DATABASE: KeyTable = KeyTable {
    path: "postgres.databases",
    keys: &[("name", Read), ("owner", Read), ("ensure", Read)],
};

pub const SECRET: KeyTable = KeyTable {
    path: "secrets.*",
    keys: &[("from_env", Read), ("from_file", Read), ("generate", Read)],
};

pub const MOUNT: KeyTable = KeyTable {
    path: "mounts",
    keys: &[
        ("source", Read),
        ("destination", Read),
        ("initial_size", Read),
        ("snapshot_retention", Read),
        ("scheduled_snapshots", Read),
        ("snapshot_time", Read),
        ("auto_extend_size_threshold", Ignored),
        ("auto_extend_size_increment", Ignored),
        ("auto_extend_size_limit", Ignored),
        ("processes", Ignored),
        ("encrypted", Ignored),
    ],
};

pub const VM: KeyTable = KeyTable {
    path: "vm",
    keys: &[
        ("size", Read),
        ("memory", Read),
        ("memory_mb", Read),
        ("cpus", Read),
        ("cpu_kind", Read),
        ("gpu_kind", Ignored),
        ("gpus", Ignored),
        ("processes", Ignored),
        ("kernel_args", Ignored),
        ("host_dedication_id", Ignored),
        ("persist_rootfs", Ignored),
    ],
};

pub const ATTACHMENT: KeyTable = KeyTable {
    path: "attachments",
    keys: &[
        ("app", Read),
        ("database", Read),
        ("user", Read),
        ("variable", Read),
        ("superuser", Read),
    ],
};

/// Only `postgres` is read under `services`; everything else there belongs to
/// ordinary Fly services and is ignored without a key check.
pub const SERVICES: KeyTable = KeyTable {
    path: "services",
    keys: &[("postgres", Read)],
};

pub const BACKUP: KeyTable = KeyTable {
    path: "postgres.backup",
    keys: &[
        ("secret", Read),
        ("archive_timeout", Read),
        ("recovery_window", Read),
        ("full_backup_frequency", Read),
        ("minimum_redundancy", Read),
    ],
};

pub const RESTORE: KeyTable = KeyTable {
    path: "postgres.restore",
    keys: &[
        ("backup_secret", Read),
        ("target_time", Read),
        ("target", Read),
    ],
};

pub const SERVICES_POSTGRES: KeyTable = KeyTable {
    path: "services.postgres",
    keys: &[
        ("image", Read),
        ("internal_port", Read),
        ("restart_policy", Read),
        ("disable_proxy", Read),
        ("processes", Read),
        ("env", Read),
    ],
};

pub const SERVICES_POSTGRES_PROCESS: KeyTable = KeyTable {
    path: "services.postgres.processes",
    keys: &[("name", Read), ("command", Read)],
};

/// The variables flyplan reads from `[[services.postgres.env]]`; any other
/// variable is accepted as it is.
pub const SERVICES_POSTGRES_ENV: KeyTable = KeyTable {
    path: "services.postgres.env",
    keys: &[
        ("PG_PORT", Read),
        ("PG_USER", Read),
        ("PG_PASSWORD", Read),
        ("PG_DATABASE", Read),
    ],
};

/// Every key table, in the order a reader meets them.
pub const TABLES: &[&KeyTable] = &[
    &TOP,
    &BUILD,
    &POSTGRES,
    &BACKUP,
    &RESTORE,
    &USER,
    &USER_PASSWORD,
    &DATABASE,
    &SECRET,
    &MOUNT,
    &VM,
    &ATTACHMENT,
    &SERVICES,
    &SERVICES_POSTGRES,
    &SERVICES_POSTGRES_PROCESS,
    &SERVICES_POSTGRES_ENV,
];

/// `(table path, key)` for every key the parser accepts, read or ignored.
/// Tables whose keys are names chosen by the user (`secrets`,
/// `postgres.read_replicas`) appear through their entries: `secrets.*`.
pub fn known_keys() -> Vec<(&'static str, &'static str)> {
    TABLES
        .iter()
        .flat_map(|t| t.keys.iter().map(|(k, _)| (t.path, *k)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_table_lists_a_key_twice() {
        for t in TABLES {
            let mut names: Vec<_> = t.names().collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "duplicate key in `{}`", t.path);
        }
    }
}
