//! Broken fly.toml files, one per test: each must fail with a located
//! `path:line:column: message`, the caret under the offending text, and a
//! helpful suggestion where there is one.

use std::path::Path;

use flyplan::config::{self, ConfigError, Diagnostic, Dialect, SecretSource};

/// The diagnostics of a source that must not parse.
fn diagnostics(src: &str) -> Vec<Diagnostic> {
    match config::parse(Path::new("fly.toml"), src) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(ConfigError::Invalid { diagnostics }) => diagnostics,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The first line of the first diagnostic: `fly.toml:line:column: message`.
fn err(src: &str) -> String {
    let text = diagnostics(src)[0].to_string();
    text.lines().next().unwrap_or_default().to_string()
}

/// The text the first diagnostic's caret points at.
fn caret(src: &str) -> String {
    let d = &diagnostics(src)[0];
    d.source_line
        .chars()
        .skip(d.column - 1)
        .take(d.width)
        .collect()
}

/// The help of the first diagnostic.
fn help(src: &str) -> String {
    diagnostics(src)[0].help.clone().unwrap_or_default()
}

const HEAD: &str = "app = \"my-postgres-app\"\nprimary_region = \"iad\"\n";

fn with_head(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

#[test]
fn toml_syntax_error_is_located() {
    let src = "app = \"my-postgres-app\nprimary_region = \"iad\"\n";
    assert_eq!(
        err(src),
        "fly.toml:1:23: TOML syntax error: invalid basic string, expected `\"`"
    );
}

#[test]
fn duplicate_toml_key_names_the_key() {
    let src = with_head("[postgres]\ninstances = 1\ninstances = 2\n");
    assert_eq!(
        err(&src),
        "fly.toml:5:1: TOML syntax error: duplicate key `instances`"
    );
    assert_eq!(caret(&src), "instances");
}

#[test]
fn misspelled_top_level_table_suggests_postgres() {
    let src = with_head("[postgress]\ninstances = 2\n");
    assert_eq!(err(&src), "fly.toml:3:2: unknown key `postgress`");
    assert_eq!(caret(&src), "postgress");
    assert_eq!(help(&src), "did you mean `postgres`?");
}

#[test]
fn misspelled_primary_region_key_suggests_the_key() {
    let src = "app = \"my-postgres-app\"\nprimery_region = \"iad\"\n";
    let d = diagnostics(src);
    let unknown = d
        .iter()
        .find(|d| d.message.starts_with("unknown key"))
        .expect("unknown key");
    assert_eq!(unknown.message, "unknown key `primery_region`");
    assert_eq!((unknown.line, unknown.column), (2, 1));
    assert_eq!(
        unknown.help.as_deref(),
        Some("did you mean `primary_region`?")
    );
}

#[test]
fn unknown_top_level_key_lists_what_flyplan_reads() {
    let src = with_head("flavour = \"vanilla\"\n");
    assert_eq!(err(&src), "fly.toml:3:1: unknown key `flavour`");
    assert!(
        help(&src).starts_with("flyplan reads `app`, `primary_region`"),
        "{}",
        help(&src)
    );
}

#[test]
fn misspelled_postgres_key_suggests_instances() {
    let src = with_head("[postgres]\n  instnces = 3\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:3: unknown key `instnces` in `[postgres]`"
    );
    assert_eq!(caret(&src), "instnces");
    assert_eq!(help(&src), "did you mean `instances`?");
}

#[test]
fn instances_as_a_string_is_a_type_error() {
    let src = with_head("[postgres]\n  instances = \"3\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:15: `postgres.instances` must be an integer, found a string"
    );
    assert_eq!(caret(&src), "\"3\"");
}

#[test]
fn zero_instances_is_rejected() {
    let src = with_head("[postgres]\ninstances = 0\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:13: `postgres.instances` must be at least 1"
    );
    assert_eq!(caret(&src), "0");
}

#[test]
fn sync_standbys_beyond_primary_region_standbys_is_rejected() {
    let src =
        with_head("[postgres]\ninstances = 2\nsync_standbys = 2\nread_replicas = { ams = 3 }\n");
    assert_eq!(
        err(&src),
        "fly.toml:5:17: `postgres.sync_standbys` must be at most instances - 1 (1): only standbys in the primary region can be synchronous"
    );
    assert_eq!(caret(&src), "2");
    assert_eq!(
        help(&src),
        "raise `instances` to 3 or lower `sync_standbys`"
    );
}

#[test]
fn negative_sync_standbys_is_rejected() {
    let src = with_head("[postgres]\ninstances = 3\nsync_standbys = -1\n");
    assert_eq!(
        err(&src),
        "fly.toml:5:17: `postgres.sync_standbys` must be at least 0"
    );
    assert_eq!(diagnostics(&src).len(), 1, "no follow-up error");
}

#[test]
fn snapshot_retention_of_zero_is_located() {
    let src = with_head(
        "[[mounts]]\n  source = \"pg_data\"\n  snapshot_retention = 0\n  destination = \"/data\"\n",
    );
    assert_eq!(
        err(&src),
        "fly.toml:5:24: snapshot_retention must be between 1 and 60 days, found 0"
    );
    assert_eq!(caret(&src), "0");
}

#[test]
fn snapshot_retention_above_60_is_located() {
    let src = with_head(
        "[[mounts]]\n  snapshot_retention = 61 # two months\n  destination = \"/data\"\n",
    );
    assert_eq!(
        err(&src),
        "fly.toml:4:24: snapshot_retention must be between 1 and 60 days, found 61"
    );
    assert_eq!(caret(&src), "61");
}

#[test]
fn scheduled_snapshots_as_yes_wants_a_boolean() {
    let src = with_head("[[mounts]]\n  scheduled_snapshots = \"yes\"\n  destination = \"/data\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:25: `mounts[0].scheduled_snapshots` must be a boolean, found a string"
    );
    assert_eq!(caret(&src), "\"yes\"");
    assert_eq!(help(&src), "write true or false, without quotes");
}

#[test]
fn read_replica_in_the_primary_region_is_rejected() {
    let src = with_head("[postgres]\n  read_replicas = { ams = 1, iad = 2 }\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:30: read replicas must be outside the primary region (\"iad\")"
    );
    assert_eq!(caret(&src), "iad");
}

#[test]
fn unknown_primary_region_suggests_the_closest_code() {
    let src = "app = \"my-postgres-app\"\nprimary_region = \"iaf\"\n";
    assert_eq!(err(src), "fly.toml:2:18: unknown Fly region \"iaf\"");
    assert_eq!(caret(src), "\"iaf\"");
    assert_eq!(help(src), "did you mean `iad`?");
}

#[test]
fn unknown_read_replica_region_is_located_at_the_key() {
    let src = with_head("[postgres.read_replicas]\n  amz = 1\n");
    assert_eq!(err(&src), "fly.toml:4:3: unknown Fly region \"amz\"");
    assert_eq!(caret(&src), "amz");
    assert_eq!(help(&src), "did you mean `ams`?");
}

#[test]
fn attaching_the_same_app_twice_points_at_the_second() {
    let src =
        with_head("[[attachments]]\n  app = \"myapp\"\n\n[[attachments]]\n  app = \"myapp\"\n");
    assert_eq!(err(&src), "fly.toml:7:9: app `myapp` is attached twice");
    assert_eq!(help(&src), "the first attachment is on line 4");
}

#[test]
fn hostile_attachment_app_name_is_rejected() {
    let src = with_head("[[attachments]]\n  app = \"x\\\"; DROP TABLE\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:9: invalid Fly app name \"x\\\"; DROP TABLE\": use only lowercase letters, digits and `-`"
    );
    assert_eq!(caret(&src), "\"x\\\"; DROP TABLE\"");
}

#[test]
fn hostile_attachment_user_name_is_rejected() {
    let src = with_head("[[attachments]]\n  app = \"myapp\"\n  user = \"a b\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:5:10: invalid user name \"a b\": use only lowercase letters, digits and `_`"
    );
    assert_eq!(caret(&src), "\"a b\"");
}

#[test]
fn invalid_database_identifier_is_rejected() {
    let src = with_head("[[postgres.databases]]\n  name = \"9lives\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:10: invalid database name \"9lives\": it must start with a letter or `_`"
    );
}

#[test]
fn reserved_role_names_are_rejected() {
    let src = with_head("[[postgres.users]]\n  name = \"pg_monitor\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:10: invalid user name \"pg_monitor\": names starting with `pg_` are reserved for PostgreSQL's own roles"
    );
}

#[test]
fn uppercase_app_name_is_not_a_fly_app_name() {
    let src = "app = \"My-App\"\nprimary_region = \"iad\"\n";
    assert_eq!(
        err(src),
        "fly.toml:1:7: invalid Fly app name \"My-App\": use only lowercase letters, digits and `-`"
    );
    assert_eq!(caret(src), "\"My-App\"");
}

#[test]
fn underscore_app_name_is_not_a_fly_app_name() {
    let src = "app = \"my_app\"\nprimary_region = \"iad\"\n";
    assert_eq!(
        err(src),
        "fly.toml:1:7: invalid Fly app name \"my_app\": use only lowercase letters, digits and `-`"
    );
}

#[test]
fn empty_app_name_is_rejected() {
    let src = "app = \"\"\nprimary_region = \"iad\"\n";
    assert_eq!(err(src), "fly.toml:1:7: `app` must not be empty");
}

#[test]
fn secret_given_by_value_is_refused() {
    let src = with_head("[secrets]\n  PG_PASSWORD = \"hunter2\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:17: secrets are declared by source, never by value"
    );
    assert_eq!(caret(&src), "\"hunter2\"");
    assert!(help(&src).contains("PG_PASSWORD = { from_env = \"PG_PASSWORD\" }"));
}

#[test]
fn secret_with_a_misspelled_source_suggests_from_env() {
    let src = with_head("[secrets]\n  PG_PASSWORD = { from_evn = \"PG_PASSWORD\" }\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:19: unknown key `from_evn` in `secrets.PG_PASSWORD`"
    );
    assert_eq!(help(&src), "did you mean `from_env`?");
}

#[test]
fn referenced_secret_must_be_declared() {
    let src = with_head("[postgres]\n  operator_password = \"PG_PASSWORD\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:23: secret `PG_PASSWORD` is not declared"
    );
    assert_eq!(caret(&src), "\"PG_PASSWORD\"");
    assert_eq!(
        help(&src),
        "declare it in [secrets], e.g. PG_PASSWORD = { from_env = \"PG_PASSWORD\" }"
    );
}

#[test]
fn user_password_secret_must_be_declared() {
    let src = with_head(
        "[[postgres.users]]\n  name = \"app_ro\"\n  password = { secret = \"RO_PASSWORD\" }\n",
    );
    assert_eq!(
        err(&src),
        "fly.toml:5:25: secret `RO_PASSWORD` is not declared"
    );
}

#[test]
fn initial_size_in_words_is_rejected() {
    let src = with_head("[[mounts]]\n  initial_size = \"ten gb\"\n  destination = \"/data\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:18: `mounts[0].initial_size` must be a size such as \"10gb\" or \"500mb\""
    );
    assert_eq!(caret(&src), "\"ten gb\"");
}

#[test]
fn memory_in_words_is_rejected() {
    let src = with_head("[[vm]]\n  memory = \"lots\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:12: `vm[0].memory` must be an amount of memory such as \"512mb\" or \"2gb\""
    );
}

#[test]
fn snapshot_time_must_be_hh_mm() {
    let src = with_head("[mounts]\n  snapshot_time = \"25:00\"\n  destination = \"/data\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:19: `mounts[0].snapshot_time` must be a UTC time of day \"HH:MM\", found \"25:00\""
    );
}

#[test]
fn build_as_an_array_of_tables_is_rejected() {
    let src = with_head("[[build]]\n  image = \"flyio/postgres-flex:15\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:3:1: `build` must be a table, found an array of tables"
    );
    assert_eq!(caret(&src), "[[build]]");
    assert_eq!(help(&src), "write [build], not [[build]]");
}

#[test]
fn missing_app_is_reported_at_the_start_of_the_file() {
    let src = "primary_region = \"iad\"\n";
    assert_eq!(err(src), "fly.toml:1:1: missing key `app`");
}

#[test]
fn user_declared_twice_points_at_the_second() {
    let src = with_head(
        "[[postgres.users]]\n  name = \"app_ro\"\n[[postgres.users]]\n  name = \"app_ro\"\n",
    );
    assert_eq!(err(&src), "fly.toml:6:10: user `app_ro` is declared twice");
    assert_eq!(help(&src), "the first one is on line 4");
}

#[test]
fn services_dialect_with_a_literal_password_is_refused() {
    let src = "[services.postgres]\n  image = \"flyio/postgres:14\"\n\n[[services.postgres.env]]\n  PG_USER = \"fly\"\n  PG_PASSWORD = \"hunter2\"\n";
    assert_eq!(
        err(src),
        "fly.toml:6:17: a password must not be written in fly.toml"
    );
    assert_eq!(
        help(src),
        "put the password in a secret: PG_PASSWORD = \"$PG_PASSWORD\""
    );
}

#[test]
fn an_ordinary_app_is_not_taken_for_a_cluster() {
    let src = "app = \"web\"\nprimary_region = \"iad\"\n[http_service]\n  internal_port = 8080\n";
    assert_eq!(
        err(src),
        "fly.toml:1:7: this is the fly.toml of an ordinary Fly app, not of a Postgres cluster"
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let src = "app = \"Bad_Name\"\nprimary_region = \"xyz\"\n[postgres]\ninstances = 0\n[[mounts]]\nsnapshot_retention = 99\ndestination = \"/data\"\n";
    let lines: Vec<usize> = diagnostics(src).iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![1, 2, 4, 6]);
    let text = ConfigError::Invalid {
        diagnostics: diagnostics(src),
    }
    .to_string();
    assert!(text.ends_with("4 errors in fly.toml"), "{text}");
    assert!(
        text.contains("1 | app = \"Bad_Name\"\n  |       ^^^^^^^^^^"),
        "{text}"
    );
}

// ----- what must parse ------------------------------------------------------

#[test]
fn the_design_example_parses_with_its_values() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/design-native.toml");
    let cfg = config::load(Path::new(path)).expect("the DESIGN example parses");
    assert_eq!(cfg.dialect, Dialect::Native);
    assert_eq!(cfg.app, "my-postgres-app");
    assert_eq!(cfg.primary_region, "iad");
    assert_eq!(cfg.pg_major, 15);
    assert_eq!(cfg.postgres.instances, 3);
    assert_eq!(cfg.postgres.sync_standbys, 1);
    assert_eq!(cfg.postgres.read_replicas.get("ams"), Some(&1));
    assert_eq!(
        cfg.postgres.operator_password.as_deref(),
        Some("PG_PASSWORD")
    );
    assert_eq!(
        cfg.secrets.get("PG_PASSWORD"),
        Some(&SecretSource::Env {
            var: "PG_PASSWORD".into()
        })
    );
    let m = &cfg.mounts[0];
    assert_eq!((m.initial_size_gb, m.snapshot_retention), (10, 7));
    assert_eq!(cfg.vm.memory_mb, 512);
    assert_eq!(cfg.attachments.len(), 2);
    let a = &cfg.attachments[0];
    assert_eq!((a.database.as_str(), a.user.as_str()), ("myapp", "myapp"));
    assert_eq!(a.variable, "DATABASE_URL");
    assert!(a.superuser);
    let b = &cfg.attachments[1];
    assert_eq!(b.user, "billing_worker");
    assert_eq!(b.variable, "BILLING_DATABASE_URL");
    assert!(!b.superuser);
    assert!(cfg.spans.get("attachments[1].app").is_some());
    assert!(cfg.spans.get("mounts[0].snapshot_retention").is_some());
    assert!(cfg.notes.is_empty(), "{:?}", cfg.notes);
}

#[test]
fn the_seed_services_dialect_parses_as_written() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seed-dialect.toml");
    let cfg = config::load(Path::new(path)).expect("the seed dialect parses");
    assert_eq!(cfg.dialect, Dialect::Services);
    assert_eq!(cfg.postgres.operator_user, "fly");
    assert_eq!(cfg.postgres.database.as_deref(), Some("myapp_db"));
    assert_eq!(
        cfg.postgres.operator_password.as_deref(),
        Some("PG_PASSWORD")
    );
    assert_eq!(
        cfg.secrets.get("PG_PASSWORD"),
        Some(&SecretSource::Env {
            var: "PG_PASSWORD".into()
        })
    );
    assert_eq!(cfg.postgres.instances, 2);
    assert_eq!(cfg.postgres.port, 5432);
    assert_eq!(cfg.pg_major, 14);
    assert_eq!(cfg.image, "flyio/postgres:14");
    assert_eq!(cfg.app, "data");
    assert_eq!(cfg.primary_region, "iad");
    assert_eq!(cfg.notes.len(), 2, "{:?}", cfg.notes);
    assert!(cfg.spans.get("postgres.operator_password").is_some());
}

#[test]
fn users_and_databases_take_their_defaults() {
    let src = with_head(
        "[secrets]\nRO = { generate = true }\n[[postgres.users]]\nname = \"app_ro\"\npassword_secret = \"RO\"\nmember_of = [\"pg_read_all_data\"]\n[[postgres.databases]]\nname = \"reports\"\nowner = \"app_ro\"\n",
    );
    let cfg = config::parse(Path::new("fly.toml"), &src).expect("parses");
    let u = &cfg.postgres.users[0];
    assert_eq!(u.password_secret.as_deref(), Some("RO"));
    assert!(u.login && !u.superuser && !u.createdb);
    assert_eq!(u.connection_limit, -1);
    assert_eq!(u.member_of, vec!["pg_read_all_data".to_string()]);
    assert_eq!(cfg.postgres.databases[0].owner.as_deref(), Some("app_ro"));
    assert_eq!(cfg.mounts.len(), 1, "one default mount");
    assert_eq!(cfg.vm.memory_mb, 256);
}

#[test]
fn attachments_as_a_single_table_ask_for_an_array() {
    let src = with_head("[attachments]\n  app = \"myapp\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:3:1: `attachments` must be an array of tables, found a table"
    );
    assert_eq!(help(&src), "write each entry as [[attachments]]");
}

#[test]
fn secret_with_two_sources_points_at_the_second() {
    let src =
        with_head("[secrets]\nPG_PASSWORD = { from_env = \"PG_PASSWORD\", generate = true }\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:43: secret `PG_PASSWORD` has more than one source"
    );
    assert_eq!(caret(&src), "generate");
}

#[test]
fn secret_names_are_uppercase() {
    let src = with_head("[secrets]\npg_password = { generate = true }\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:1: invalid secret name \"pg_password\""
    );
}

#[test]
fn memory_and_memory_mb_together_are_refused() {
    let src = with_head("[[vm]]\nmemory = \"1gb\"\nmemory_mb = 1024\n");
    assert_eq!(
        err(&src),
        "fly.toml:5:13: memory is set twice, by `memory` and `memory_mb`"
    );
}

#[test]
fn services_dialect_keys_are_checked_too() {
    let src = "[services.postgres]\n  image = \"flyio/postgres:14\"\n  restart_policy = \"sometimes\"\n  internal_prot = 5432\n";
    let d = diagnostics(src);
    assert_eq!(d[0].to_string().lines().next(), Some("fly.toml:3:20: `services.postgres.restart_policy` must be one of \"no\", \"always\", \"on-failure\", \"fail\""));
    assert_eq!(
        d[1].message,
        "unknown key `internal_prot` in `[services.postgres]`"
    );
    assert_eq!(d[1].help.as_deref(), Some("did you mean `internal_port`?"));
}

// ----- more that must parse ---------------------------------------------------

fn ok(src: &str) -> flyplan::config::Config {
    config::parse(Path::new("fly.toml"), src).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn services_dialect_honours_postgres_instances_and_braced_references() {
    let cfg = ok("app = \"pg-one\"\nprimary_region = \"fra\"\n[postgres]\ninstances = 3\n[services.postgres]\nimage = \"postgres:16\"\n[[services.postgres.env]]\nPG_PASSWORD = \"${ROOT_PW}\"\n");
    assert_eq!(cfg.dialect, Dialect::Services);
    assert_eq!(cfg.postgres.instances, 3);
    assert_eq!(cfg.postgres.operator_user, "postgres");
    assert_eq!(cfg.postgres.operator_password.as_deref(), Some("ROOT_PW"));
    assert_eq!(cfg.pg_major, 16);
    assert!(cfg.notes.is_empty(), "{:?}", cfg.notes);
}

#[test]
fn a_legacy_file_takes_its_region_from_env_with_a_note() {
    let cfg = ok("app = \"old-pg\"\nkill_timeout = 300\n[env]\n  PRIMARY_REGION = \"ord\"\n[mounts]\n  destination = \"/data\"\n");
    assert_eq!(cfg.primary_region, "ord");
    assert_eq!(cfg.mounts[0].source, "pg_data");
    assert!(cfg.spans.get("mounts[0].destination").is_some());
    let messages: Vec<&str> = cfg.notes.iter().map(|n| n.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "`kill_timeout` is an ordinary Fly app key; flyplan ignores it",
            "`env` is an ordinary Fly app key; flyplan ignores it",
            "`primary_region` is not set; using env.PRIMARY_REGION = \"ord\"",
        ]
    );
    assert_eq!((cfg.notes[0].line, cfg.notes[0].column), (2, 1));
}

#[test]
fn only_the_first_vm_sizes_the_nodes() {
    let cfg = ok(&with_head(
        "[[vm]]\nmemory = \"2gb\"\ncpus = 2\n[[vm]]\nmemory_mb = 256\nprocesses = [\"cron\"]\n",
    ));
    assert_eq!((cfg.vm.memory_mb, cfg.vm.cpus), (2048, 2));
    assert!(cfg
        .notes
        .iter()
        .any(|n| n.line == 6 && n.message.contains("first [[vm]]")));
    assert!(cfg.spans.get("vm.memory").is_some());
}

#[test]
fn missing_app_after_blank_lines_shows_the_first_written_line() {
    let src = "\n\n# the cluster\nprimary_region = \"iad\"\n";
    assert_eq!(err(src), "fly.toml:3:1: missing key `app`");
    assert_eq!(diagnostics(src)[0].source_line, "# the cluster");
}

#[test]
fn attachment_user_taken_by_a_declared_user_is_rejected() {
    let src =
        with_head("[[postgres.users]]\n  name = \"myapp\"\n\n[[attachments]]\n  app = \"myapp\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:7:9: user `myapp` of the attachment of app `myapp` is already [[postgres.users]] entry 1"
    );
}

#[test]
fn two_attachments_cannot_share_a_user() {
    let src = with_head(
        "[[attachments]]\n  app = \"web\"\n  user = \"shared\"\n\n[[attachments]]\n  app = \"worker\"\n  user = \"shared\"\n",
    );
    assert!(err(&src).starts_with("fly.toml:9:10: user `shared` of the attachment of app `worker` is already the user of the attachment of app `web`"), "{}", err(&src));
}

#[test]
fn misspelled_postgresql_setting_suggests_the_setting() {
    let src = with_head("[postgres.parameters]\nwork_mme = \"8MB\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:1: unknown PostgreSQL setting `work_mme`"
    );
    assert_eq!(caret(&src), "work_mme");
    assert_eq!(help(&src), "did you mean `work_mem`?");
}

#[test]
fn postgresql_setting_values_are_checked_against_type_unit_and_range() {
    let src = with_head("[postgres.parameters]\nwork_mem = \"8 parsecs\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:12: invalid value: unknown unit \"parsecs\" for `work_mem`: use one of B, kB, MB, GB, TB"
    );
    assert_eq!(caret(&src), "\"8 parsecs\"");
    let src = with_head("[postgres.parameters]\nmax_connections = 0\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:19: invalid value: `max_connections` must be between 1 and 262143"
    );
    let src = with_head("[postgres.parameters]\nlog_statement = \"most\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:17: invalid value: `log_statement` must be one of \"none\", \"ddl\", \"mod\", \"all\""
    );
    let src = with_head("[postgres.parameters]\njit = \"maybe\"\n");
    assert!(err(&src).starts_with("fly.toml:4:7: invalid value: `jit` is a boolean"));
    let src = with_head("[postgres.parameters]\nstatement_timeout = [1]\n");
    assert!(err(&src).contains("must be a string, number or boolean, found an array"));
}

#[test]
fn settings_flyplan_owns_are_refused_with_the_reason() {
    let src = with_head("[postgres.parameters]\nwork_mem = \"8MB\"\nlisten_addresses = \"*\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:5:1: `listen_addresses` cannot be set in fly.toml"
    );
    assert!(help(&src).contains("flyplan chooses the address and port"));
    let src = with_head("[postgres.parameters]\nwal_level = \"logical\"\n");
    assert!(help(&src).contains("pg_auto_failover"), "{}", help(&src));
    let src = with_head("[postgres.parameters]\nsynchronous_commit = \"off\"\n");
    assert!(help(&src).contains("sync_standbys"), "{}", help(&src));
    let src = with_head("[postgres.parameters]\narchive_mode = \"on\"\n");
    assert!(help(&src).contains("[postgres.backup]"), "{}", help(&src));
}

#[test]
fn postgresql_settings_read_in_canonical_form() {
    let src = with_head(
        "[postgres.parameters]\nwork_mem = 8192\nshared_buffers = \"0.25GB\"\nstatement_timeout = \"120s\"\njit = false\nTimeZone = \"UTC\"\n",
    );
    let c = config::parse(Path::new("fly.toml"), &src).expect("valid");
    let p: Vec<(&str, &str)> = c
        .postgres
        .parameters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        p,
        [
            ("TimeZone", "UTC"),
            ("jit", "off"),
            ("shared_buffers", "256MB"),
            ("statement_timeout", "2min"),
            ("work_mem", "8MB"),
        ]
    );
}

#[test]
fn node_counts_beyond_one_cluster_are_refused() {
    let src = with_head("[postgres]\ninstances = 11\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:13: a cluster holds at most 10 nodes (instances plus read replicas), found 11"
    );
    let src = with_head("[postgres]\ninstances = 3\nread_replicas = { ams = 4, syd = 4 }\n");
    assert_eq!(
        err(&src),
        "fly.toml:5:17: a cluster holds at most 10 nodes (instances plus read replicas), found 11"
    );
    assert!(help(&src).contains("WAL sender"), "{}", help(&src));
}

#[test]
fn image_tag_without_a_readable_major_version_is_refused() {
    let src = with_head("[build]\nimage = \"flyio/postgres-flex:latest\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:4:9: cannot read a PostgreSQL major version from the image tag \"latest\""
    );
    assert_eq!(caret(&src), "\"flyio/postgres-flex:latest\"");
    assert!(help(&src).contains("flyio/postgres-flex:15"));
}

#[test]
fn mount_without_destination_is_refused_as_flyctl_does() {
    let src = with_head("[postgres]\ninstances = 1\n\n[[mounts]]\nsource = \"pg_data\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:6:1: missing key `destination` in `[[mounts]]`"
    );
    assert!(help(&src).contains("destination = \"/data\""));
}

#[test]
fn memory_outside_flys_limits_per_cpu_is_refused_at_the_memory_key() {
    // fly-go `machine_types.go`: 256..=2048 MB per shared CPU, 2048..=8192
    // per performance CPU; flyctl refuses anything else before it asks.
    let src = with_head("[[vm]]\n  size = \"shared-cpu-1x\"\n  memory = \"4gb\"\n");
    assert_eq!(
        err(&src),
        "fly.toml:5:12: 4096 MB of memory for 1 shared CPU(s) is outside Fly's limits: \
         256 to 2048 MB (256 to 2048 MB per shared CPU)"
    );
    assert_eq!(caret(&src), "\"4gb\"");
    let src = with_head("[[vm]]\n  cpu_kind = \"performance\"\n  cpus = 2\n");
    assert!(
        err(&src).contains("256 MB of memory for 2 performance CPU(s)"),
        "{}",
        err(&src)
    );
    assert_eq!(caret(&src), "2");
    // Within the limits, and every preset, is accepted.
    for ok in [
        "[[vm]]\n  size = \"shared-cpu-2x\"\n  memory = \"4gb\"\n",
        "[[vm]]\n  size = \"performance-2x\"\n  memory = \"16gb\"\n",
        "[[vm]]\n  cpu_kind = \"shared\"\n  cpus = 1\n  memory = \"256mb\"\n",
    ] {
        config::parse(Path::new("fly.toml"), &with_head(ok))
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (size, ..) in flyplan::config::presets::PRESETS {
        let src = with_head(&format!("[[vm]]\n  size = \"{size}\"\n"));
        config::parse(Path::new("fly.toml"), &src).unwrap_or_else(|e| panic!("{size}: {e}"));
    }
}
