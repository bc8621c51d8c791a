//! `flyplan env -a APP`: what an attached app gets, for local development.

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::args::{Cli, EnvArgs, ProviderName};
use super::state_dir;

/// The one command that prints secret values, on purpose: what an attached
/// app gets, for local development.
pub(super) fn env_cmd(cli: &Cli, a: &EnvArgs) -> Result<ExitCode> {
    if cli.provider != ProviderName::Local || cli.live.is_some() {
        bail!(
            "flyplan env reads the local provider's attached apps; on Fly the \
             values live in the app's secrets (`fly ssh console -a {} -C env`)",
            a.app
        );
    }
    let dir = state_dir(cli);
    let vars = crate::provider::local::attached_env(&dir, &a.app, a.multi_host)?;
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
