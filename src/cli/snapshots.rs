//! `flyplan snapshots list|create|run|verify|restore`; a restore is
//! `flyplan apply --snapshot-id`.
//! The snapshot store is the provider's ([`crate::snapshot::Snapshots`]).

use std::process::ExitCode;

use anyhow::{bail, Result};
use time::OffsetDateTime;

use super::args::{
    ApplyArgs, Cli, ConfigArg, NowArg, SnapshotListArgs, SnapshotRestoreArgs, SnapshotRunArgs,
    SnapshotTakeArgs, SnapshotsCommand,
};
use super::{load_config, open_provider};
use crate::model::Kind;
use crate::provider::Provider;
use crate::snapshot::{clock, Manifest, Snapshots};

pub(super) fn snapshots(cli: &Cli, command: &SnapshotsCommand) -> Result<ExitCode> {
    match command {
        SnapshotsCommand::Restore(a) => restore(cli, a),
        SnapshotsCommand::List(a) => {
            let provider = open_provider(cli)?;
            match provider.snapshots() {
                Some(store) => list(store, a),
                None => list_platform(provider.as_ref(), a),
            }
        }
        SnapshotsCommand::Create(a) => with_store(cli, |s| create(s, a)),
        SnapshotsCommand::Run(a) => with_store(cli, |s| run(s, a)),
        SnapshotsCommand::Verify(a) => with_store(cli, |s| {
            let m = s.verify(&a.id)?;
            println!(
                "Snapshot {} is intact: {} files, {}, taken {} from {} of app {}.",
                m.id,
                m.files,
                human_bytes(m.size_bytes),
                clock::format(m.taken_at),
                m.node,
                m.app
            );
            Ok(ExitCode::SUCCESS)
        }),
    }
}

fn with_store(cli: &Cli, f: impl FnOnce(&dyn Snapshots) -> Result<ExitCode>) -> Result<ExitCode> {
    let provider = open_provider(cli)?;
    let Some(store) = provider.snapshots() else {
        bail!(
            "the {} provider does not keep snapshots itself: Fly takes them on its own schedule \
             (a volume's snapshot_retention and scheduled_snapshots); see `fly volumes snapshots list`",
            provider.name()
        );
    };
    f(store)
}

fn now_of(a: &NowArg) -> Result<OffsetDateTime> {
    Ok(match &a.now {
        Some(t) => clock::parse("--now", t)?,
        None => clock::now()?,
    })
}

fn app_of(config: &ConfigArg) -> Result<String> {
    Ok(load_config(config)?.app)
}

fn list(store: &dyn Snapshots, a: &SnapshotListArgs) -> Result<ExitCode> {
    let app = match (&a.app, a.all) {
        (Some(app), _) => Some(app.clone()),
        (None, true) => None,
        (None, false) => Some(app_of(&a.config)?),
    };
    let all = store.list(app.as_deref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        match app {
            Some(app) => println!("No snapshots of app {app}."),
            None => println!("No snapshots."),
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<48} {:<9} {:<21} {:>10} {:<16} TRIGGER",
        "ID", "VOLUME", "TAKEN (UTC)", "SIZE", "FROM"
    );
    for m in &all {
        println!(
            "{:<48} {:<9} {:<21} {:>10} {:<16} {}",
            m.id,
            m.volume,
            clock::format(m.taken_at),
            human_bytes(m.size_bytes),
            m.node,
            m.trigger.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Snapshots the platform takes itself (Fly), as observe reports them on
/// each volume.
fn list_platform(provider: &dyn Provider, a: &SnapshotListArgs) -> Result<ExitCode> {
    let app = match &a.app {
        Some(app) => app.clone(),
        None if a.all => bail!(
            "the {} provider lists snapshots per app: use -a APP or -c fly.toml",
            provider.name()
        ),
        None => app_of(&a.config)?,
    };
    let live = provider.status(&app)?;
    let mut rows = Vec::new();
    for v in live.of_kind(Kind::Volume) {
        for s in v.checks.snapshots.iter().flatten() {
            let mut row = serde_json::to_value(s)?;
            row["volume"] = v.address.as_str().into();
            rows.push(row);
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No snapshots of app {app}.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<24} {:<22} {:>10} STATUS",
        "ID", "VOLUME", "CREATED", "SIZE"
    );
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        println!(
            "{:<24} {:<24} {:<22} {:>10} {}",
            s("id"),
            s("volume"),
            s("created_at"),
            r["size"].as_u64().map(human_bytes).unwrap_or_default(),
            s("status")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn taken_line(m: &Manifest) -> String {
    format!(
        "{}: {} from {} ({}), verified, {:.1}s",
        m.id,
        human_bytes(m.size_bytes),
        m.node,
        m.node_role,
        m.duration_ms as f64 / 1000.0
    )
}

fn create(store: &dyn Snapshots, a: &SnapshotTakeArgs) -> Result<ExitCode> {
    let app = app_of(&a.config)?;
    let now = now_of(&a.now)?;
    let taken = store.create(&app, now)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&taken)?);
    } else {
        for m in &taken {
            println!("Snapshot taken: {}", taken_line(m));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run(store: &dyn Snapshots, a: &SnapshotRunArgs) -> Result<ExitCode> {
    let now = now_of(&a.now)?;
    let apps = if a.all {
        store.apps()?
    } else {
        vec![app_of(&a.config)?]
    };
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for app in &apps {
        match store.run(app, now) {
            Ok(r) => reports.push(r),
            // With --all, one app's failure does not keep the others from
            // their snapshots.
            Err(e) if a.all => failed.push(e.to_string()),
            Err(e) => return Err(e.into()),
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            println!("App {} at {}:", r.app, clock::format(now));
            for m in &r.taken {
                println!("  taken   {}", taken_line(m));
            }
            for id in &r.pruned {
                println!("  pruned  {id} (older than the retention)");
            }
            for v in &r.not_due {
                println!("  {v}: no snapshot due");
            }
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(ExitCode::SUCCESS)
}

/// `flyplan snapshots restore ID`: `flyplan apply --snapshot-id ID`.
fn restore(cli: &Cli, a: &SnapshotRestoreArgs) -> Result<ExitCode> {
    let args = ApplyArgs {
        planfile: None,
        config: ConfigArg {
            config: a.config.config.clone(),
        },
        auto_approve: a.auto_approve,
        allow_destroy: false,
        parallelism: a.parallelism,
        snapshot_id: Some(a.id.clone()),
    };
    super::apply_cmd(cli, &args)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
