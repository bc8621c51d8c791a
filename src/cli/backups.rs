//! `flyplan backups list|create|run|restore|verify`: base backups in the object store of
//! `[postgres.backup]`, run by the provider ([`crate::backup::Backups`]).

use std::process::ExitCode;

use anyhow::{bail, Result};

use std::io::IsTerminal;

use super::args::{BackupListArgs, BackupRestoreArgs, BackupRunArgs, BackupsCommand, Cli};
use super::{load_config, open_provider, Terminal};
use crate::backup::Backups;
use crate::config::{RestoreConfig, RestoreTarget};
use crate::model::Kind;
use crate::pipeline::{self, Mode, Request};
use crate::render::Format;
use crate::snapshot::clock;

pub(super) fn backups(cli: &Cli, command: &BackupsCommand) -> Result<ExitCode> {
    match command {
        BackupsCommand::List(a) => with_runner(cli, a, |b, app| list(b, app, a.json)),
        BackupsCommand::Create(a) => with_runner(cli, a, |b, app| {
            let (id, node) = b.create(app)?;
            if a.json {
                println!("{}", serde_json::json!({ "backup_id": id, "node": node }));
            } else {
                println!("Base backup {id} of app {app} taken from {node}.");
            }
            Ok(ExitCode::SUCCESS)
        }),
        BackupsCommand::Run(a) => run(cli, a),
        BackupsCommand::Restore(a) => restore(cli, a),
        BackupsCommand::Verify(a) => {
            let args = BackupListArgs {
                config: super::args::ConfigArg {
                    config: a.config.config.clone(),
                },
                json: a.json,
            };
            with_runner(cli, &args, |b, app| {
                let v = b.verify(app, &a.id)?;
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!(
                        "Backup {} is sound: restored, replayed to consistency, and {} btree indexes in {} databases pass {}.",
                        v.backup_id,
                        v.indexes_checked,
                        v.databases.len(),
                        v.method
                    );
                }
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// `flyplan apply` of fly.toml with `[postgres.restore]` set from the flags;
/// an app that exists is refused before anything is planned.
fn restore(cli: &Cli, a: &BackupRestoreArgs) -> Result<ExitCode> {
    if !a.auto_approve && !std::io::stdin().is_terminal() {
        bail!("restore needs --auto-approve when not run from a terminal");
    }
    let mut config = load_config(&a.config)?;
    let secret = match (&a.secret, &config.postgres.restore) {
        (Some(s), _) => s.clone(),
        (None, Some(r)) => r.backup_secret.clone(),
        (None, None) => bail!(
            "name the secret holding the source store URL: --secret NAME, or [postgres.restore] backup_secret in {}",
            a.config.config.display()
        ),
    };
    if !config.secrets.contains_key(&secret) {
        bail!(
            "secret {secret} is not declared in [secrets] of {}",
            a.config.config.display()
        );
    }
    let target = match (&a.target_time, &a.target) {
        (Some(t), _) => match crate::config::normalise_time(t) {
            Some(t) => RestoreTarget::Time(t),
            None => {
                bail!("--target-time {t:?} is not an RFC 3339 time (e.g. 2026-11-30T10:15:00Z)")
            }
        },
        (None, Some(id)) => RestoreTarget::Backup(id.clone()),
        (None, None) => config
            .postgres
            .restore
            .as_ref()
            .map_or(RestoreTarget::Latest, |r| r.target.clone()),
    };
    config.postgres.restore = Some(RestoreConfig {
        backup_secret: secret,
        target,
    });
    let desired = super::desired_of(&config)?;
    let provider = open_provider(cli)?;
    let live = pipeline::observe(provider.as_ref(), &config.app)?;
    if live.of_kind(Kind::App).next().is_some() {
        bail!(
            "app {} already exists: a restore creates a new cluster; set another `app` in {} (or destroy this one first)",
            config.app,
            a.config.config.display()
        );
    }
    let request = Request {
        mode: Mode::Apply {
            desired,
            restore_from: None,
        },
        allow_destroy: false,
        parallelism: a.parallelism,
    };
    let mut terminal = Terminal::new(Format::Text, a.auto_approve);
    let run = pipeline::run(provider.as_ref(), request, &mut terminal)?;
    Ok(super::report_run(&run, &terminal, "Restore cancelled."))
}

fn with_runner(
    cli: &Cli,
    a: &BackupListArgs,
    f: impl FnOnce(&dyn Backups, &str) -> Result<ExitCode>,
) -> Result<ExitCode> {
    let app = load_config(&a.config)?.app;
    let provider = open_provider(cli)?;
    let Some(runner) = provider.backups() else {
        bail!(
            "the {} provider has no base backups to run for app {app}",
            provider.name()
        );
    };
    f(runner, &app)
}

fn list(b: &dyn Backups, app: &str, json: bool) -> Result<ExitCode> {
    let all = b.list(app)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("No base backups of app {app}.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<18} {:<8} {:<26} {:<26} BEGIN WAL",
        "ID", "STATUS", "BEGIN (UTC)", "END (UTC)"
    );
    for x in &all {
        println!(
            "{:<18} {:<8} {:<26} {:<26} {}",
            x.backup_id,
            x.status,
            x.begin_time.as_deref().unwrap_or("-"),
            x.end_time.as_deref().unwrap_or("-"),
            x.begin_wal.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run(cli: &Cli, a: &BackupRunArgs) -> Result<ExitCode> {
    let now = match &a.now.now {
        Some(t) => clock::parse("--now", t)?,
        None => clock::now()?,
    };
    let args = BackupListArgs {
        config: super::args::ConfigArg {
            config: a.config.config.clone(),
        },
        json: a.json,
    };
    with_runner(cli, &args, |b, app| {
        let report = b.run(app, now)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{app}: {}", report.summary());
        }
        Ok(ExitCode::SUCCESS)
    })
}
