//! `[postgres.backup]` and `[postgres.restore]` as postgres-flex takes them
//! (fly-apps/postgres-flex at d263c9ed9427):
//!
//! - WAL archiving and the backup schedule are on in a node whose
//!   environment has `S3_ARCHIVE_CONFIG`, read at boot only
//!   (`internal/flypg/node.go:118-121`, `pg.go:190-210`,
//!   `cmd/monitor/main.go:51-71`), so a node takes a new value when it is
//!   updated with the new secrets version, as `fly secrets deploy` does
//!   (flyctl `backup enable` sets the secret and tells the user to run it,
//!   `internal/command/postgres/backup.go:358-366`).
//! - The four settings live in postgres-flex's barman configuration, read
//!   and written through its admin API on port 5500, reached as
//!   `localhost:5500` with `curl` through `exec`:
//!   `GET /commands/admin/settings/view/barman` answers `{"result": {name:
//!   value}}` (defaults merged with the user's values), `POST
//!   .../update/barman` takes `{name: "value"}` with string values only and
//!   answers `restart_required: true` (`internal/api/handle_admin.go:302-395`,
//!   `internal/flypg/barman_config.go:15-169`). This is what `fly pg backup
//!   config update` reaches, through `flexctl backup config update`
//!   (flyctl `backup.go:568-621`; postgres-flex `cmd/flexctl/backups.go:319-397`).
//! - A new cluster restores from another's store when its first node boots
//!   with `S3_ARCHIVE_REMOTE_RESTORE_CONFIG`: the source URL, then
//!   `?targetTime=T` or `?targetName=ID` and `&targetInclusive=true`, as
//!   `fly pg backup restore` writes it (flyctl `backup.go:127-143, 431-447`;
//!   read by postgres-flex `internal/flypg/barman_restore.go:34-78`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::api::Machine;
use super::client::FlyClient;
use super::exec::exec;
use super::ledger::Ledger;
use super::observe::{role_check, AppView, CHANGED_OUTSIDE};
use super::settings::curl;
use crate::config::units;
use crate::model::{Address, Agreed, BackupPolicySpec, Digest, Resource, Spec};
use crate::provider::ProviderError;

/// The secret postgres-flex archives to.
pub const ARCHIVE_SECRET: &str = "S3_ARCHIVE_CONFIG";
/// The secret a new cluster restores from.
pub const RESTORE_SECRET: &str = "S3_ARCHIVE_REMOTE_RESTORE_CONFIG";

const ADMIN: &str = "http://localhost:5500/commands/admin/settings";

/// postgres-flex's defaults (`barman_config.go:59-66`).
const DEFAULTS: [(&str, &str); 4] = [
    ("archive_timeout", "60s"),
    ("recovery_window", "7d"),
    ("full_backup_frequency", "24h"),
    ("minimum_redundancy", "3"),
];

/// The `exec` command that reads the barman settings.
pub fn view_command() -> Vec<String> {
    curl("GET", &format!("{ADMIN}/view/barman"), None)
}

/// The `exec` command that stores `values` in the barman settings.
pub fn update_command(values: &BTreeMap<&str, String>) -> Vec<String> {
    curl(
        "POST",
        &format!("{ADMIN}/update/barman"),
        Some(serde_json::json!(values).to_string()),
    )
}

/// The settings of `spec` as postgres-flex stores them: strings, under its
/// own names (`barman_config.go:15-20`).
pub fn wanted(spec: &BackupPolicySpec) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("archive_timeout", spec.archive_timeout.clone()),
        ("full_backup_frequency", spec.full_backup_frequency.clone()),
        ("minimum_redundancy", spec.minimum_redundancy.to_string()),
        ("recovery_window", spec.recovery_window.clone()),
    ])
}

/// What postgres-flex's validation refuses of `spec`, which fly.toml
/// allows (`barman_config.go:130-155`: a recovery window in days, weeks or
/// years, a base backup at most every hour), said before anything is sent.
pub fn refused(spec: &BackupPolicySpec) -> Option<String> {
    let window = spec.recovery_window.trim();
    if !window.ends_with(['d', 'w', 'y']) {
        return Some(format!(
            "recovery_window {window:?}: postgres-flex takes days, weeks or years (`7d`, `2w`, `1y`)"
        ));
    }
    if seconds(&spec.full_backup_frequency).is_some_and(|s| s < 3600) {
        return Some(format!(
            "full_backup_frequency {:?}: postgres-flex takes one hour or more",
            spec.full_backup_frequency
        ));
    }
    None
}

#[derive(Deserialize)]
struct ViewAnswer {
    result: BTreeMap<String, serde_json::Value>,
}

/// The barman settings machine `machine` answers.
///
/// # Errors
/// When `exec` fails (barman not enabled there answers 500), or the answer
/// is not the API's.
pub async fn read(
    client: &FlyClient,
    label: &str,
    app: &str,
    machine: &str,
) -> Result<BTreeMap<String, String>, ProviderError> {
    let reply = exec(client, label, app, machine, view_command(), None).await?;
    let answer: ViewAnswer = serde_json::from_str(reply.stdout.trim()).map_err(|e| {
        ProviderError::failed(
            label,
            format!("the barman settings API answered something else ({e})"),
        )
    })?;
    Ok(answer
        .result
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// Seconds of a duration written as postgres-flex accepts it: a number and
/// a unit, or a sequence of them as Go's `time.ParseDuration` reads
/// (`1h30m`). `None` when it is not one, or not whole seconds.
fn seconds(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut micros: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let n: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let per: u128 = match &rest[..unit_len] {
            "us" => 1,
            "ms" => 1_000,
            "s" => 1_000_000,
            "m" | "min" => 60_000_000,
            "h" => 3_600_000_000,
            "d" => 86_400_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        micros += n * per;
    }
    (micros % 1_000_000 == 0).then(|| u64::try_from(micros / 1_000_000).ok())?
}

/// The settings a node answers, in flyplan's forms (`60s`, `24h`, `7d`, a
/// number): a setting the answer lacks takes postgres-flex's default, a
/// value flyplan cannot read is shown as written.
pub fn canonical(answer: &BTreeMap<String, String>) -> (String, String, String, u64) {
    let get = |k: &str| {
        answer.get(k).cloned().unwrap_or_else(|| {
            DEFAULTS
                .iter()
                .find(|(d, _)| *d == k)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        })
    };
    let archive = get("archive_timeout");
    let archive = seconds(&archive).map_or(archive, |s| format!("{s}s"));
    let full = get("full_backup_frequency");
    let full = seconds(&full).map_or(full, units::format_duration_s);
    let window = get("recovery_window").trim().to_string();
    let redundancy = get("minimum_redundancy").trim().parse().unwrap_or(u64::MAX);
    (archive, full, window, redundancy)
}

/// Whether the settings `answer` shows are those of `spec`.
pub fn settings_match(answer: &BTreeMap<String, String>, spec: &BackupPolicySpec) -> bool {
    let (archive, full, window, redundancy) = canonical(answer);
    archive == spec.archive_timeout
        && full == spec.full_backup_frequency
        && window == spec.recovery_window
        && redundancy == spec.minimum_redundancy
}

/// The secret named by `restore_backup` (`NAME`, `NAME?targetTime=T`,
/// `NAME?target=ID`), and the query postgres-flex's restore config takes
/// for its target, as flyctl writes it (`backup.go:431-447`: with a target,
/// `&targetInclusive=true`, the flag's default; a backup is named with
/// `targetName`).
pub fn restore_parts(input: &str) -> (&str, String) {
    let (name, target) = input.split_once('?').unwrap_or((input, ""));
    let query = if let Some(t) = target.strip_prefix("targetTime=") {
        format!("?targetTime={t}&targetInclusive=true")
    } else if let Some(id) = target.strip_prefix("target=") {
        format!("?targetName={id}&targetInclusive=true")
    } else {
        String::new()
    };
    (name, query)
}

/// The shell line that prints flyplan's digest ([`crate::secrets::digest`])
/// of the machine's `S3_ARCHIVE_CONFIG` under app `$1` and name `$2`, as
/// `sha256sum` prints it: the value stays in the machine, and an unset
/// variable is an error.
pub const DIGEST_SCRIPT: &str = "set -o pipefail; printf 'flyplan-secret-v1\\0%s\\0%s\\0%s' \
     \"$1\" \"$2\" \"${S3_ARCHIVE_CONFIG:?is not set}\" | sha256sum";

/// The `exec` command for [`DIGEST_SCRIPT`].
pub fn digest_command(app: &str, name: &str) -> Vec<String> {
    ["bash", "-c", DIGEST_SCRIPT, "digest", app, name]
        .map(str::to_string)
        .to_vec()
}

/// flyplan's digest of the store URL machine `machine` runs with, under
/// the declared name `name`.
///
/// # Errors
/// When `exec` fails, the variable is unset, or the answer is no digest.
pub async fn machine_digest(
    client: &FlyClient,
    app: &str,
    machine: &str,
    name: &str,
) -> Result<String, ProviderError> {
    let label = format!("digest of the store URL machine {machine} runs with");
    let reply = exec(
        client,
        &label,
        app,
        machine,
        digest_command(app, name),
        None,
    )
    .await?;
    let hex = reply.stdout.split_whitespace().next().unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ProviderError::failed(
            label,
            "sha256sum answered something else",
        ));
    }
    Ok(format!("sha256:{hex}"))
}

/// The leader, or failing that any started machine.
pub(super) fn asked(machines: &[Machine]) -> Option<&Machine> {
    let started = || machines.iter().filter(|m| m.state == "started");
    started()
        .find(|m| role_check(m) == Some("primary"))
        .or_else(|| started().next())
}

/// What observe found of the backups of an app.
pub struct Observed {
    pub policy: Resource,
    /// flyplan's digest of `S3_ARCHIVE_CONFIG` as the leader runs with it,
    /// when flyplan never set it (a cluster backed up outside flyplan):
    /// the secret's digest too.
    pub adopted_digest: Option<String>,
}

/// `backup_policy.<app>` as the app shows it, when `S3_ARCHIVE_CONFIG` is
/// set: the store flyplan can vouch for (the value it set, with every node
/// booted since), and the settings the leader's admin API answers.
/// `archiving` is `on` when the leader answers: postgres-flex refuses the
/// view on a node booted without `S3_ARCHIVE_CONFIG`.
///
/// When flyplan never set the secret (`fly pg backup enable`, or `fly pg
/// create --enable-backups`, then `flyplan import`), the store is the value
/// the leader runs with, as flyplan's digest computed in the machine
/// ([`DIGEST_SCRIPT`]): the first plan of an imported cluster given that
/// value is empty, another value is a change.
///
/// # Errors
/// When the ledger cannot be read.
pub async fn observe(
    client: &FlyClient,
    app: &str,
    view: &AppView,
    ledger: &Ledger,
) -> Result<Option<Observed>, ProviderError> {
    let Some(live) = view.secrets.iter().find(|s| s.name == ARCHIVE_SECRET) else {
        return Ok(None);
    };
    let book = ledger.backup()?;
    let name = book
        .secret
        .clone()
        .unwrap_or_else(|| ARCHIVE_SECRET.to_string());
    let adopted_digest = match (&book.fly_digest, asked(&view.machines)) {
        (None, Some(m)) => match machine_digest(client, app, &m.id, &name).await {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(app, error = %e, "the store the nodes run with was not observed");
                None
            }
        },
        _ => None,
    };
    let store = match (&book.fly_digest, &book.flyplan_digest, &adopted_digest) {
        (Some(fly), Some(ours), _) if *fly == live.digest && book.deployed => ours.clone(),
        (None, _, Some(adopted)) => adopted.clone(),
        _ => CHANGED_OUTSIDE.to_string(),
    };
    let label = format!("observe the backup settings of app {app}");
    let (answer, archiving) = match asked(&view.machines) {
        Some(m) => match read(client, &label, app, &m.id).await {
            Ok(a) => (a, crate::desired::ARCHIVING_ON.to_string()),
            Err(e) => {
                tracing::warn!(app, error = %e, "the barman settings were not observed");
                (BTreeMap::new(), format!("not confirmed: {e}"))
            }
        },
        None => (
            BTreeMap::new(),
            "not confirmed: no started machine".to_string(),
        ),
    };
    let (archive_timeout, full_backup_frequency, recovery_window, minimum_redundancy) =
        canonical(&answer);
    let policy = Resource::new(
        Address::backup_policy(app),
        Spec::BackupPolicy(BackupPolicySpec {
            archive_timeout,
            archiving: Some(Agreed::One(archiving)),
            full_backup_frequency,
            minimum_redundancy,
            recovery_window,
            secret: name,
            store: Some(Digest(store)),
        }),
    );
    Ok(Some(Observed {
        policy,
        adopted_digest: adopted_digest.filter(|_| book.secret.is_none()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_postgres_flex_and_go_write_them() {
        assert_eq!(seconds("60s"), Some(60));
        assert_eq!(seconds("1min"), Some(60));
        assert_eq!(seconds("24h"), Some(86_400));
        assert_eq!(seconds("1h30m"), Some(5_400));
        assert_eq!(seconds("1500ms"), None);
        assert_eq!(seconds("soon"), None);
        let answer = BTreeMap::from([
            ("archive_timeout".to_string(), "2min".to_string()),
            ("full_backup_frequency".to_string(), "1440m".to_string()),
        ]);
        assert_eq!(
            canonical(&answer),
            ("120s".to_string(), "24h".to_string(), "7d".to_string(), 3)
        );
    }

    #[test]
    fn what_postgres_flex_refuses_is_said_first() {
        let mut spec = BackupPolicySpec {
            archive_timeout: "60s".into(),
            archiving: None,
            full_backup_frequency: "24h".into(),
            minimum_redundancy: 3,
            recovery_window: "7d".into(),
            secret: ARCHIVE_SECRET.into(),
            store: None,
        };
        assert_eq!(refused(&spec), None);
        spec.recovery_window = "1m".into();
        assert!(refused(&spec).unwrap().contains("days, weeks or years"));
        spec.recovery_window = "2w".into();
        spec.full_backup_frequency = "30m".into();
        assert!(refused(&spec).unwrap().contains("one hour or more"));
    }

    #[test]
    fn the_digest_script_computes_flyplans_digest_in_bash_and_fails_when_unset() {
        let url = "https://AK:S K'$x@fly.storage.tigris.dev/bkt/dir";
        let c = digest_command("pg-x", ARCHIVE_SECRET);
        let run = |value: Option<&str>| {
            let mut cmd = std::process::Command::new(&c[0]);
            cmd.args(&c[1..]).env_remove(ARCHIVE_SECRET);
            if let Some(v) = value {
                cmd.env(ARCHIVE_SECRET, v);
            }
            cmd.output().unwrap()
        };
        let o = run(Some(url));
        assert!(o.status.success(), "{o:?}");
        let out = String::from_utf8(o.stdout).unwrap();
        let hex = out.split_whitespace().next().unwrap();
        assert_eq!(
            format!("sha256:{hex}"),
            crate::secrets::digest("pg-x", ARCHIVE_SECRET, url)
        );
        assert!(!run(None).status.success());
    }

    #[test]
    fn restore_targets_are_written_as_flyctl_writes_them() {
        assert_eq!(
            restore_parts("SRC?targetTime=2026-11-30T10:15:00Z"),
            (
                "SRC",
                "?targetTime=2026-11-30T10:15:00Z&targetInclusive=true".to_string()
            )
        );
        assert_eq!(
            restore_parts("SRC?target=20261130T101500"),
            (
                "SRC",
                "?targetName=20261130T101500&targetInclusive=true".to_string()
            )
        );
        assert_eq!(restore_parts("SRC"), ("SRC", String::new()));
    }

    #[test]
    fn updates_send_strings_under_postgres_flex_names() {
        let c = update_command(&BTreeMap::from([
            ("archive_timeout", "30s".to_string()),
            ("minimum_redundancy", "2".to_string()),
        ]));
        assert_eq!(
            c[8],
            r#"{"archive_timeout":"30s","minimum_redundancy":"2"}"#
        );
        assert_eq!(
            c.last().unwrap(),
            "http://localhost:5500/commands/admin/settings/update/barman"
        );
        assert_eq!(view_command()[4], "GET");
    }
}
