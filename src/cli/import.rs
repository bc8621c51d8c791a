//! `flyplan import -a APP [-o FILE] [--force] [--no-roles]`: observe a live
//! cluster and write its fly.toml, to standard output or to a new file.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::args::{Cli, ImportArgs};
use super::open_provider;
use crate::config;
use crate::import::{self, ImportOptions};
use crate::pipeline;

pub fn import(cli: &Cli, a: &ImportArgs) -> Result<ExitCode> {
    if let Err(why) = config::check_fly_app_name(&a.app) {
        bail!("-a {}: invalid Fly app name: {why}", a.app);
    }
    // Refuse before observing: nothing is read or written for nothing.
    if let Some(out) = &a.output {
        if out.exists() && !a.force {
            bail!(
                "{} already exists: pass --force to overwrite it",
                out.display()
            );
        }
    }
    let provider = open_provider(cli)?;
    let live = pipeline::observe(provider.as_ref(), &a.app)?;
    let text = import::fly_toml(
        &a.app,
        &live,
        ImportOptions {
            no_roles: a.no_roles,
        },
    )?;
    match &a.output {
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
        Some(out) => {
            crate::fsutil::write_atomic(out, text.as_bytes(), None)
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "Wrote {} from the live cluster of app {}. Export the variables its [secrets] name, then run: flyplan plan -c {}",
                out.display(),
                a.app,
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
