//! Turning the loop: a step at a time on a blocking thread, between sleeps
//! that a webhook or a shutdown signal can cut short.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use super::watcher::{StepReport, Watcher};
use super::{http, ReconcileError};

/// Turn the loop until `shutdown` resolves: a step, then sleep until the
/// interval (or a retry) is due or a webhook wakes it. With `listen`, serve
/// `POST /hook` and `GET /metrics` there; `on_step` sees every step.
///
/// # Errors
/// The listen address cannot be bound.
///
/// # Guarantees
/// A step in flight when shutdown comes finishes (its apply completes and
/// its record is written) before this returns; the watch's lock and any
/// apply lock are released by then.
pub async fn run(
    watcher: Watcher,
    listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()> + Send,
    on_step: impl Fn(&StepReport) + Send + Sync + 'static,
) -> Result<(), ReconcileError> {
    let wake = Arc::new(tokio::sync::Notify::new());
    let server = match listen {
        Some(addr) => {
            let (bound, handle) = http::serve(addr, watcher.shared_state(), wake.clone())
                .await
                .map_err(|e| ReconcileError::io(format!("listen on {addr}"), e))?;
            watcher.set_listen(Some(bound))?;
            tracing::info!("listening on http://{bound}");
            eprintln!("flyplan watch: listening on http://{bound} (POST /hook, GET /metrics)");
            Some(handle)
        }
        None => None,
    };
    tokio::pin!(shutdown);
    let mut stop = false;
    let mut watcher = Some(watcher);
    loop {
        let mut w = watcher.take().expect("watcher");
        let mut step = tokio::task::spawn_blocking(move || {
            let report = w.step(false);
            (w, report)
        });
        // Let a signal arrive during the step, but never abandon the step.
        let (w, report) = loop {
            tokio::select! {
                joined = &mut step => break joined.expect("reconcile step panicked"),
                () = &mut shutdown, if !stop => stop = true,
            }
        };
        on_step(&report);
        let wait = w.next_wake();
        watcher = Some(w);
        if stop {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
            () = &mut shutdown => break,
        }
    }
    if let Some(h) = server {
        h.abort();
    }
    let w = watcher.expect("watcher");
    w.set_listen(None)?;
    Ok(())
}
