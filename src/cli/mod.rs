//! The commands: turn what the user typed into what flyplan does, and map
//! results to exit codes (0 ok / no changes, 1 error, 2 changes).

pub mod args;
mod progress;
mod snapshots;
mod watch;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

pub use args::Cli;
use args::*;

use crate::apply::{self, ApplyOptions};
use crate::config::{self, Config};
use crate::desired::Desired;
use crate::model::{attr, Kind};
use crate::plan::{self, Plan, PlanOptions};
use crate::planfile::PlanFile;
use crate::provider::fly::{FlyOptions, FlyProvider};
use crate::provider::local::LocalProvider;
use crate::provider::{file::FileProvider, Provider};
use crate::render::{self, Format};
use crate::secrets::ProcessEnv;

/// Exit code for "succeeded, and there are changes" (`--detailed-exitcode`).
pub const EXIT_CHANGES: u8 = 2;

/// Run one command.
///
/// # Errors
/// Any error; `main` prints it and exits 1.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Validate(a) => validate(a),
        Command::Plan(a) => plan_cmd(&cli, a),
        Command::Apply(a) => apply_cmd(&cli, a),
        Command::Status(a) => status(&cli, a),
        Command::Env(a) => env_cmd(&cli, a),
        Command::Destroy(a) => destroy(&cli, a),
        Command::Watch(a) => watch::watch(&cli, a),
        Command::Snapshots(c) => snapshots::snapshots(&cli, c),
    }
}

/// The state directory: flag, `FLYPLAN_HOME`, or the platform default.
pub fn state_dir(cli: &Cli) -> PathBuf {
    if let Some(d) = &cli.state_dir {
        return d.clone();
    }
    if nix::unistd::Uid::effective().is_root() {
        // Servers run as an unprivileged user who cannot enter /root.
        return PathBuf::from("/var/lib/flyplan");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("flyplan");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/flyplan")
}

/// The provider the user chose.
pub fn open_provider(cli: &Cli) -> Result<Box<dyn Provider>> {
    if let Some(path) = &cli.live {
        return Ok(Box::new(FileProvider::new(path.clone())));
    }
    match cli.provider {
        ProviderName::Local => Ok(Box::new(LocalProvider::new(state_dir(cli))?)),
        ProviderName::Fly => {
            let options = FlyOptions::from_env(state_dir(cli))?;
            Ok(Box::new(FlyProvider::new(options)?))
        }
    }
}

fn load_config(arg: &ConfigArg) -> Result<Config> {
    let config = config::load(&arg.config)?;
    for note in &config.notes {
        eprintln!(
            "note: {}:{}:{}: {}",
            arg.config.display(),
            note.line,
            note.column,
            note.message
        );
    }
    Ok(config)
}

fn validate(arg: &ConfigArg) -> Result<ExitCode> {
    let config = load_config(arg)?;
    let pg = &config.postgres;
    let replicas: u32 = pg.read_replicas.values().sum();
    println!(
        "{}: valid. App {} in {}: {} node(s) in {} ({} sync standby(s)), {} read replica(s), {} attachment(s), PostgreSQL {}.",
        arg.config.display(),
        config.app,
        config.primary_region,
        pg.instances,
        config.primary_region,
        pg.sync_standbys,
        replicas,
        config.attachments.len(),
        config.pg_major
    );
    Ok(ExitCode::SUCCESS)
}

fn desired_of(config: &Config) -> Result<Desired> {
    Ok(Desired::from_config(config, &ProcessEnv)?)
}

fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn plan_cmd(cli: &Cli, a: &PlanArgs) -> Result<ExitCode> {
    let config = load_config(&a.config)?;
    let desired = if a.destroy {
        Desired::nothing(&config.app)
    } else {
        desired_of(&config)?
    };
    let provider = open_provider(cli)?;
    let live = provider.observe(&desired.app)?;
    let plan = plan::plan(
        &desired,
        &live,
        PlanOptions {
            allow_destroy: a.allow_destroy,
        },
    );
    print!("{}", render::render(&plan, a.format, color_stdout()));
    if let Some(out) = &a.out {
        PlanFile {
            kind: crate::planfile::KIND.to_string(),
            config_path: absolute(&a.config.config),
            secret_sources: desired.secret_sources.clone(),
            plan: plan.clone(),
        }
        .save(out)?;
        if a.format == Format::Text {
            println!(
                "\nSaved the plan to {}. Apply it with: flyplan apply {}",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if a.detailed_exitcode && plan.has_changes() {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn confirm(plan: &Plan, auto_approve: bool) -> Result<bool> {
    if auto_approve {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("apply needs --auto-approve when not run from a terminal");
    }
    print!(
        "\nDo you want to perform these actions on app {}?\n  Only 'yes' will be accepted: ",
        plan.app
    );
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

fn apply_cmd(cli: &Cli, a: &ApplyArgs) -> Result<ExitCode> {
    if !a.auto_approve && !std::io::stdin().is_terminal() {
        bail!("apply needs --auto-approve when not run from a terminal");
    }
    let provider = open_provider(cli)?;
    let opts = ApplyOptions {
        parallelism: a.parallelism,
        allow_destroy: a.allow_destroy,
    };
    if let Some(path) = &a.planfile {
        return apply_saved(provider.as_ref(), path, a, &opts);
    }
    if PlanFile::sniff(&a.config.config) {
        bail!(
            "{} is a saved plan: run flyplan apply {}",
            a.config.config.display(),
            a.config.config.display()
        );
    }
    let config = load_config(&a.config)?;
    let mut desired = desired_of(&config)?;
    let _lock = provider.lock(&desired.app)?;
    let live = provider.observe(&desired.app)?;
    if let Some(id) = &a.snapshot_id {
        snapshots::seed_from(&mut desired, &live, provider.as_ref(), id)?;
    }
    let plan = plan::plan(
        &desired,
        &live,
        PlanOptions {
            allow_destroy: a.allow_destroy,
        },
    );
    print!("{}", render::render(&plan, Format::Text, color_stdout()));
    if !plan.has_changes() {
        return Ok(ExitCode::SUCCESS);
    }
    apply::check_blocked(&plan, a.allow_destroy)?;
    if !confirm(&plan, a.auto_approve)? {
        println!("Apply cancelled.");
        return Ok(ExitCode::FAILURE);
    }
    run_apply(provider.as_ref(), &plan, &desired.secret_values, &opts)
}

/// Apply a saved plan: only while live state still has its fingerprint.
fn apply_saved(
    provider: &dyn Provider,
    path: &Path,
    a: &ApplyArgs,
    opts: &ApplyOptions,
) -> Result<ExitCode> {
    let pf = PlanFile::load(path)?;
    let _lock = provider.lock(&pf.plan.app)?;
    let live = provider.observe(&pf.plan.app)?;
    let now = live.fingerprint();
    if now != pf.plan.live_fingerprint {
        return Err(apply::ApplyError::Stale {
            planned: short(&pf.plan.live_fingerprint),
            now: short(&now),
        }
        .into());
    }
    apply::check_blocked(&pf.plan, a.allow_destroy || pf.plan.allow_destroy)?;
    let secrets = pf.secret_values(&ProcessEnv)?;
    print!("{}", render::render(&pf.plan, Format::Text, color_stdout()));
    if !pf.plan.has_changes() {
        return Ok(ExitCode::SUCCESS);
    }
    if !confirm(&pf.plan, a.auto_approve)? {
        println!("Apply cancelled.");
        return Ok(ExitCode::FAILURE);
    }
    run_apply(provider, &pf.plan, &secrets, opts)
}

fn short(fp: &str) -> String {
    fp.trim_start_matches("sha256:").chars().take(12).collect()
}

fn run_apply(
    provider: &dyn Provider,
    plan: &Plan,
    secrets: &crate::provider::SecretValues,
    opts: &ApplyOptions,
) -> Result<ExitCode> {
    let progress = progress::for_terminal(plan);
    let report = apply::execute(provider, plan, secrets, opts, progress.as_ref())?;
    progress.finish();
    let s = plan.summary;
    println!(
        "\nApply complete! Resources: {} added, {} changed, {} destroyed ({:.1}s).",
        s.add,
        s.change,
        s.destroy,
        report.elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn destroy(cli: &Cli, a: &DestroyArgs) -> Result<ExitCode> {
    if !a.allow_destroy {
        bail!("destroy deletes every node, volume and database of the app: pass --allow-destroy");
    }
    if !a.auto_approve && !std::io::stdin().is_terminal() {
        bail!("destroy needs --auto-approve when not run from a terminal");
    }
    let config = load_config(&a.config)?;
    let provider = open_provider(cli)?;
    let desired = Desired::nothing(&config.app);
    let _lock = provider.lock(&desired.app)?;
    let live = provider.observe(&desired.app)?;
    let plan = plan::plan(
        &desired,
        &live,
        PlanOptions {
            allow_destroy: true,
        },
    );
    print!("{}", render::render(&plan, Format::Text, color_stdout()));
    if !plan.has_changes() {
        return Ok(ExitCode::SUCCESS);
    }
    if !confirm(&plan, a.auto_approve)? {
        println!("Destroy cancelled.");
        return Ok(ExitCode::FAILURE);
    }
    let opts = ApplyOptions {
        allow_destroy: true,
        ..Default::default()
    };
    run_apply(provider.as_ref(), &plan, &Default::default(), &opts)
}

fn status(cli: &Cli, a: &StatusArgs) -> Result<ExitCode> {
    let config = load_config(&a.config)?;
    let provider = open_provider(cli)?;
    let live = provider.status(&config.app)?;
    if a.json {
        let nodes: Vec<_> = live
            .of_kind(Kind::Machine)
            .map(|m| {
                serde_json::json!({
                    "address": m.address,
                    "region": m.str(attr::REGION),
                    "role": node_role(m),
                    "state": m.str(attr::STATE),
                    "checks": m.status,
                })
            })
            .collect();
        let endpoint = live.of_kind(Kind::Endpoint).next().map(|e| {
            let mut v = serde_json::Map::new();
            v.insert("state".into(), e.str(attr::STATE).into());
            v.extend(e.status.clone());
            v
        });
        let attachments: Vec<_> = live
            .of_kind(Kind::Attachment)
            .map(|a| {
                serde_json::json!({
                    "app": a.address.as_str().trim_start_matches("attachment."),
                    "variable": a.str(attr::VARIABLE),
                    "database": a.str(attr::DATABASE),
                    "user": a.str(attr::USER),
                    "superuser": a.bool(attr::SUPERUSER),
                    "credentials": a.str(attr::CREDENTIALS),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "app": config.app,
            "nodes": nodes,
            "endpoint": endpoint,
            "attachments": attachments,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    if live.resources.is_empty() {
        println!("App {} does not exist (nothing applied yet).", config.app);
        return Ok(ExitCode::SUCCESS);
    }
    println!("App {} ({} provider)\n", config.app, provider.name());
    println!(
        "{:<16} {:<8} {:<13} {:<10} CHECKS",
        "NODE", "REGION", "ROLE", "STATE"
    );
    for m in live.of_kind(Kind::Machine) {
        println!(
            "{:<16} {:<8} {:<13} {:<10} {}",
            m.address.as_str(),
            m.str(attr::REGION).unwrap_or("?"),
            node_role(m),
            m.str(attr::STATE).unwrap_or("?"),
            human_checks(m)
        );
    }
    if let Some(e) = live.of_kind(Kind::Endpoint).next() {
        if let Some(port) = e.status.get(attr::PORT).and_then(|v| v.as_u64()) {
            let host = e
                .status
                .get("host")
                .and_then(|v| v.as_str())
                .unwrap_or("127.0.0.1");
            let user = &config.postgres.operator_user;
            println!(
                "\nLeader endpoint ({}): postgres://{user}:********@{host}:{port}/postgres",
                e.str(attr::STATE).unwrap_or("unknown")
            );
        }
    }
    let attachments: Vec<_> = live.of_kind(Kind::Attachment).collect();
    if !attachments.is_empty() {
        println!(
            "\n{:<24} {:<24} {:<20} {:<20} CREDENTIALS",
            "ATTACHED APP", "VARIABLE", "DATABASE", "USER"
        );
        for a in attachments {
            println!(
                "{:<24} {:<24} {:<20} {:<20} {}",
                a.address.as_str().trim_start_matches("attachment."),
                a.str(attr::VARIABLE).unwrap_or("?"),
                a.str(attr::DATABASE).unwrap_or("?"),
                a.str(attr::USER).unwrap_or("?"),
                a.str(attr::CREDENTIALS).unwrap_or("?")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Fly-style checks of a node: replication lag, connections, disk.
fn human_checks(m: &crate::model::Resource) -> String {
    let get = |k: &str| m.status.get(k).and_then(|v| v.as_i64());
    let mut parts = Vec::new();
    if let Some(s) = m.status.get("pg_state").and_then(|v| v.as_str()) {
        parts.push(format!("pg={s}"));
    }
    if let Some(lag) = get("lag_bytes") {
        parts.push(format!("lag={lag}B"));
    }
    if let (Some(c), Some(max)) = (get("connections"), get("max_connections")) {
        parts.push(format!("connections={c}/{max}"));
    }
    if let Some(d) = get("disk_used_bytes") {
        parts.push(format!("disk={:.1}MiB", d as f64 / 1_048_576.0));
    }
    if let Some(p) = get(attr::PORT) {
        parts.push(format!("port={p}"));
    }
    parts.join(" ")
}

fn node_role(m: &crate::model::Resource) -> &'static str {
    if m.bool(attr::LEADER) == Some(true) {
        "leader"
    } else if m.str(attr::ROLE) == Some(crate::model::role::REPLICA) {
        "read-replica"
    } else {
        "replica"
    }
}

/// The one command that prints secret values, on purpose: what an attached
/// app gets, for local development.
fn env_cmd(cli: &Cli, a: &EnvArgs) -> Result<ExitCode> {
    if cli.provider != ProviderName::Local || cli.live.is_some() {
        bail!(
            "flyplan env reads the local provider's attached apps; on Fly the \
             values live in the app's secrets (`fly ssh console -a {} -C env`)",
            a.app
        );
    }
    let dir = state_dir(cli);
    let vars = crate::provider::local::attached_env(&dir, &a.app)?;
    if vars.is_empty() {
        bail!(
            "app {} has no attachments under {} (apply a fly.toml with [[attachments]] app = {:?})",
            a.app,
            dir.display(),
            a.app
        );
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&vars)?);
    } else {
        for (k, v) in &vars {
            println!("{k}={}", shell_word(v));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A value as one POSIX shell word: as it is when it holds only safe
/// characters, else single-quoted.
fn shell_word(v: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_?&".contains(c);
    if !v.is_empty() && v.chars().all(safe) {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

/// Used by `main`: print an error the way the user should see it.
pub fn report_error(err: &anyhow::Error) {
    let mut stderr = std::io::stderr();
    if let Some(c) = err.downcast_ref::<config::ConfigError>() {
        let _ = writeln!(stderr, "{c}");
        return;
    }
    let _ = writeln!(stderr, "error: {err:#}");
}
