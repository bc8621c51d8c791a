//! Running barman-cloud: as the service user with a credentials file named
//! by `AWS_SHARED_CREDENTIALS_FILE` (keys never on a command line), its
//! stderr in `logs/backup.log`.

use std::path::Path;

use super::super::app::AppCtx;
use super::super::state;
use crate::provider::ProviderError;

impl AppCtx<'_> {
    /// Run a barman-cloud command with the policy's credentials file, its
    /// output in `logs/backup.log`; returns stdout.
    pub(super) fn run_barman(
        &self,
        what: &str,
        program: &str,
        args: &[String],
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, ProviderError> {
        self.run_barman_with(&self.backup_credentials(), what, program, args, timeout)
    }

    /// Run a barman-cloud command as the service user with the credentials
    /// file `credentials`; returns stdout.
    pub(super) fn run_barman_with(
        &self,
        credentials: &Path,
        what: &str,
        program: &str,
        args: &[String],
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, ProviderError> {
        let out = self.backup_dir().join(format!(".{program}.out"));
        state::remove_file(&out)?;
        let file = std::fs::File::create(&out)
            .map_err(|e| ProviderError::io(format!("creating {}", out.display()), e))?;
        self.user().chown(&out)?;
        let mut cmd = self.server_cmd(Path::new(program));
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", credentials)
            .args(args)
            .stdout(file);
        let result = run_with_stdout(what, cmd, &self.paths.logs().join("backup.log"), timeout);
        let bytes = std::fs::read(&out).unwrap_or_default();
        let _ = state::remove_file(&out);
        result.map(|()| bytes)
    }
}

/// Run `cmd` (stdout already set) to completion with stderr appended to
/// `log`, killing it after `timeout`.
fn run_with_stdout(
    what: &str,
    mut cmd: std::process::Command,
    log: &Path,
    timeout: std::time::Duration,
) -> Result<(), ProviderError> {
    use std::os::unix::process::CommandExt;
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| ProviderError::io(format!("opening {}", log.display()), e))?;
    cmd.stderr(err).process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| ProviderError::io(format!("{what}: starting {:?}", cmd.get_program()), e))?;
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(8)..].join("\n");
                return Err(ProviderError::failed(
                    what,
                    format!("{status}; last lines of {}:\n{tail}", log.display()),
                ));
            }
            Ok(None) if started.elapsed() > timeout => {
                super::super::process::kill_tree(
                    child.id() as i32,
                    std::time::Duration::from_secs(5),
                );
                let _ = child.wait();
                return Err(ProviderError::failed(
                    what,
                    format!("timed out after {timeout:?}"),
                ));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(e) => return Err(ProviderError::io(what.to_string(), e)),
        }
    }
}
