//! Logs go to stderr through tracing; `-v` raises the level, `RUST_LOG`
//! overrides it. Secret values and password verifiers are never logged.

use tracing_subscriber::EnvFilter;

/// tokio-postgres logs every statement it sends at debug level, password
/// verifiers (`ALTER ROLE … PASSWORD 'SCRAM-SHA-256$…'`) included: its
/// lines stop at info, whatever `-v` or `RUST_LOG` say.
const QUIET_DRIVER: &str = "tokio_postgres=info";

pub fn init(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(level))
        .add_directive(QUIET_DRIVER.parse().expect("a valid directive"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
