//! The commands: turn what the user typed into what flyplan does, and map
//! results to exit codes (0 ok / no changes, 1 error, 2 changes).

pub mod args;
mod backups;
mod env;
mod health;
mod import;
mod progress;
mod snapshots;
mod status;
mod watch;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

pub use args::Cli;
use args::*;

use crate::apply::{ApplyOptions, Progress};
use crate::config::{self, Config};
use crate::desired::Desired;
use crate::pipeline::{self, End, Mode, Operator, Request, Run};
use crate::plan::{Plan, Step};
use crate::planfile::PlanFile;
use crate::provider::fly::{FlyOptions, FlyProvider};
use crate::provider::local::LocalProvider;
use crate::provider::{file::FileProvider, Outcome as StepOutcome, Provider};
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
        Command::Validate(a) => validate(&cli, a),
        Command::Plan(a) => plan_cmd(&cli, a),
        Command::Apply(a) => apply_cmd(&cli, a),
        Command::Status(a) => status::status(&cli, a),
        Command::Env(a) => env::env_cmd(&cli, a),
        Command::Destroy(a) => destroy(&cli, a),
        Command::Watch(a) => watch::watch(&cli, a),
        Command::Snapshots(c) => snapshots::snapshots(&cli, c),
        Command::Backups(c) => backups::backups(&cli, c),
        Command::Import(a) => import::import(&cli, a),
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

/// A config the chosen provider can run: the local provider checks it
/// against what one machine holds.
fn check_for_provider(cli: &Cli, config: &Config) -> Result<()> {
    if cli.live.is_none() && matches!(cli.provider, ProviderName::Local) {
        for n in config::check_local(config)? {
            eprintln!(
                "note: {}:{}:{}: {}",
                n.path.display(),
                n.line,
                n.column,
                n.message
            );
        }
    }
    Ok(())
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

fn validate(cli: &Cli, arg: &ConfigArg) -> Result<ExitCode> {
    let config = load_config(arg)?;
    check_for_provider(cli, &config)?;
    let pg = &config.postgres;
    let replicas: u32 = pg.read_replicas.values().sum();
    let nodes = if pg.instances_declared {
        format!("{} node(s)", pg.instances)
    } else {
        "the live count of nodes (1 for a new cluster)".to_string()
    };
    let sync = if pg.instances_declared || pg.sync_standbys_declared {
        format!("{} sync standby(s)", pg.sync_standbys)
    } else {
        "the live number of sync standbys".to_string()
    };
    let replicas = if pg.read_replicas_declared {
        format!("{replicas} read replica(s)")
    } else {
        "the live read replicas".to_string()
    };
    println!(
        "{}: valid. App {} in {}: {} in {} ({}), {}, {} attachment(s), PostgreSQL {}.",
        arg.config.display(),
        config.app,
        config.primary_region,
        nodes,
        config.primary_region,
        sync,
        replicas,
        config.attachments.len(),
        config.pg_major
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn desired_of(config: &Config) -> Result<Desired> {
    Ok(Desired::from_config(config, &ProcessEnv)?)
}

fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn plan_cmd(cli: &Cli, a: &PlanArgs) -> Result<ExitCode> {
    let config = load_config(&a.config)?;
    check_for_provider(cli, &config)?;
    let desired = if a.destroy {
        Desired::nothing(&config.app)
    } else {
        desired_of(&config)?
    };
    let secret_sources = desired.secret_sources.clone();
    let provider = open_provider(cli)?;
    let request = Request {
        mode: Mode::Plan { desired },
        allow_destroy: a.allow_destroy,
        parallelism: ApplyOptions::default().parallelism,
    };
    let run = pipeline::run(
        provider.as_ref(),
        request,
        &mut Terminal::new(a.format.into(), false),
    )?;
    let plan = run.plan;
    if let Some(out) = &a.out {
        PlanFile {
            kind: crate::planfile::KIND.to_string(),
            config_path: absolute(&a.config.config),
            secret_sources,
            plan: plan.clone(),
        }
        .save(out)?;
        if a.format == FormatArg::Text {
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

/// The terminal as the pipeline's operator: prints the plan, asks for
/// "yes" unless `--auto-approve`, and shows apply progress.
pub(super) struct Terminal {
    format: Format,
    auto_approve: bool,
    bar: Option<Box<dyn progress::Finish>>,
}

impl Terminal {
    pub(super) fn new(format: Format, auto_approve: bool) -> Self {
        Terminal {
            format,
            auto_approve,
            bar: None,
        }
    }
}

impl Progress for Terminal {
    fn started(&self, step: &Step) {
        if let Some(bar) = &self.bar {
            bar.started(step);
        }
    }
    fn finished(
        &self,
        step: &Step,
        result: &Result<StepOutcome, crate::provider::ProviderError>,
        took: Duration,
    ) {
        if let Some(bar) = &self.bar {
            bar.finished(step, result, took);
        }
    }
}

impl Operator for Terminal {
    fn planned(&mut self, plan: &Plan) {
        print!("{}", render::render(plan, self.format, color_stdout()));
    }

    fn approve(&mut self, plan: &Plan) -> std::io::Result<bool> {
        if self.auto_approve {
            return Ok(true);
        }
        if !std::io::stdin().is_terminal() {
            return Err(std::io::Error::other(
                "apply needs --auto-approve when not run from a terminal",
            ));
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

    fn applying(&mut self, plan: &Plan) {
        self.bar = Some(progress::for_terminal(plan));
    }
}

fn apply_cmd(cli: &Cli, a: &ApplyArgs) -> Result<ExitCode> {
    if !a.auto_approve && !std::io::stdin().is_terminal() {
        bail!("apply needs --auto-approve when not run from a terminal");
    }
    let provider = open_provider(cli)?;
    let mode = if let Some(path) = &a.planfile {
        Mode::ApplySaved {
            planfile: Box::new(PlanFile::load(path)?),
        }
    } else {
        if PlanFile::sniff(&a.config.config) {
            bail!(
                "{} is a saved plan: run flyplan apply {}",
                a.config.config.display(),
                a.config.config.display()
            );
        }
        let config = load_config(&a.config)?;
        check_for_provider(cli, &config)?;
        Mode::Apply {
            desired: desired_of(&config)?,
            restore_from: a.snapshot_id.clone(),
        }
    };
    let request = Request {
        mode,
        allow_destroy: a.allow_destroy,
        parallelism: a.parallelism,
    };
    let mut terminal = Terminal::new(Format::Text, a.auto_approve);
    let run = pipeline::run(provider.as_ref(), request, &mut terminal)?;
    Ok(report_run(&run, &terminal, "Apply cancelled."))
}

/// Exit code and closing line of an apply or destroy.
pub(super) fn report_run(run: &Run, terminal: &Terminal, cancelled: &str) -> ExitCode {
    match &run.end {
        End::Planned | End::NoChanges => ExitCode::SUCCESS,
        End::Cancelled => {
            println!("{cancelled}");
            ExitCode::FAILURE
        }
        End::Applied(report) => {
            if let Some(bar) = &terminal.bar {
                bar.finish();
            }
            let s = run.plan.summary;
            println!(
                "\nApply complete! Resources: {} added, {} changed, {} destroyed ({:.1}s).",
                s.add,
                s.change,
                s.destroy,
                report.elapsed.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
    }
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
    let request = Request {
        mode: Mode::Destroy { app: config.app },
        allow_destroy: true,
        parallelism: ApplyOptions::default().parallelism,
    };
    let mut terminal = Terminal::new(Format::Text, a.auto_approve);
    let run = pipeline::run(provider.as_ref(), request, &mut terminal)?;
    Ok(report_run(&run, &terminal, "Destroy cancelled."))
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
