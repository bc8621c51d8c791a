//! The process's one tokio runtime. Providers are synchronous to plan and
//! apply and run their SQL and HTTP calls here; `flyplan watch` runs its
//! loop here. It is built on first use and lives as long as the process.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime, built on first use.
///
/// # Panics
/// When the operating system refuses the runtime's threads.
pub fn get() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .enable_all()
            .thread_name("flyplan-rt")
            .build()
            .expect("the tokio runtime can start")
    })
}

/// A handle to the runtime, for code that spawns onto it.
pub fn handle() -> Handle {
    get().handle().clone()
}

/// Run `fut` on the runtime and wait for it, from synchronous code: the
/// main thread, an apply step's thread, or a `spawn_blocking` task.
///
/// Called from a worker thread of a multi-threaded runtime (async code
/// that calls a provider directly, as some tests do), the worker is first
/// handed back to its runtime with `block_in_place`, so no async thread is
/// ever blocked.
///
/// # Panics
/// When called from inside a single-threaded runtime's async code: make
/// that call through `spawn_blocking` instead.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::task::block_in_place(|| get().block_on(fut))
}
