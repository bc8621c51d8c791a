//! `flyplan watch`: follow a git branch and keep the live state equal to it
//! (the loop lives in [`crate::reconcile`]); `--status`, `--suspend` and
//! `--resume` act on the record of the same repository, branch and path.

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use super::args::{Cli, WatchArgs};
use super::{open_provider, state_dir};
use crate::reconcile::{self, Backoff, WatchOptions, Watcher};

pub(super) fn watch(cli: &Cli, a: &WatchArgs) -> Result<ExitCode> {
    let opts = WatchOptions {
        repo: a.repo.clone(),
        branch: a.branch.clone(),
        path: a.path.clone(),
        interval: a.interval,
        plan_only: a.plan_only,
        backoff: Backoff {
            base: a.retry_base,
            max: a.retry_max.max(a.retry_base),
        },
        state_dir: state_dir(cli),
        parallelism: a.parallelism,
        allow_destroy: a.allow_destroy,
    };
    let dir = opts.dir();

    if a.suspend || a.resume {
        reconcile::set_suspended(&dir, a.suspend)
            .with_context(|| format!("set the suspend switch in {}", dir.display()))?;
        if a.suspend {
            println!(
                "Suspended: the watch of {} ({}) keeps fetching and planning but applies nothing until `flyplan watch --resume`.",
                a.repo, a.branch
            );
        } else {
            println!(
                "Resumed: the watch of {} ({}) applies again from its next reconcile.",
                a.repo, a.branch
            );
        }
        return Ok(ExitCode::SUCCESS);
    }

    if a.status {
        let Some(st) = reconcile::load_state(&dir)
            .with_context(|| format!("read {}", reconcile::record_path(&dir).display()))?
        else {
            if a.json {
                println!("null");
            } else {
                println!(
                    "No record yet for {} (branch {}, {}).",
                    a.repo, a.branch, a.path
                );
            }
            return Ok(ExitCode::SUCCESS);
        };
        if a.json {
            println!("{}", serde_json::to_string_pretty(&st)?);
        } else {
            print!("{}", st.render_text());
        }
        return Ok(ExitCode::SUCCESS);
    }

    let provider = open_provider(cli)?;
    let mut watcher = Watcher::open(opts, provider)?;

    if a.once {
        let report = watcher.step(true);
        println!("{report}");
        if let Some(reason) = watcher.state().current().and_then(|c| c.reason.clone()) {
            if report.failed() {
                eprintln!("{reason}");
            }
        }
        return Ok(if report.failed() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }

    crate::runtime::get().block_on(async {
        // Installed before the first step, so an early SIGTERM is also clean.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            eprintln!("flyplan watch: stopping after the step in flight");
        };
        reconcile::run(watcher, a.listen, shutdown, |report| {
            eprintln!("flyplan watch: {report}");
            if let reconcile::StepReport::Reconciled { stuck, .. } = report {
                for s in stuck {
                    eprintln!("flyplan watch: {s}");
                }
            }
        })
        .await
        .map_err(anyhow::Error::from)
    })?;
    Ok(ExitCode::SUCCESS)
}
