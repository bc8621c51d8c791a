//! `flyplan backups list|create|run`: base backups in the object store of
//! `[postgres.backup]`, run by the provider ([`crate::backup::Backups`]).

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::args::{BackupListArgs, BackupRunArgs, BackupsCommand, Cli};
use super::{load_config, open_provider};
use crate::backup::Backups;
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
    }
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
            "the {} provider does not run barman-cloud itself yet",
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
