//! Where monitors do their work: a runtime of their own, whose blocking threads lower their CPU priority below
//! the server's when they decode log files and compute statistics, so a monitor catching up on a day of
//! traffic takes the CPU that serving leaves rather than the CPU requests need. On an idle machine nothing
//! changes: a lower priority only matters when both want the same core. Only those threads are lowered, never
//! the runtime's async worker: a thread started from a lowered one inherits its priority, and the worker is
//! where shared things start theirs (the SQLite pool's connection threads, say).

use std::future::Future;
use std::sync::Arc;

use crate::service::{MonitorError, Monitoring};

/// Niceness of the monitors' threads (0 is the server's; 19 the lowest). At 10 a busy monitor thread gets about
/// a tenth of a core that a request thread also wants.
const NICENESS: i32 = 10;

/// Thread name of the monitors' runtime.
const THREAD_NAME: &str = "loopline-monitor";

/// Lowers the calling thread's CPU priority when it is one of the monitors' own (once per thread); any other
/// thread, such as the server's when monitors share its runtime, is left as it is.
pub(crate) fn yield_to_serving() {
    thread_local! {
        static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if LOWERED.get() || std::thread::current().name() != Some(THREAD_NAME) {
        return;
    }
    LOWERED.set(true);
    lower_priority();
}

/// Lowers the calling thread's CPU priority (on Linux niceness is a property of each thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let current = rustix::process::getpriority_process(None).unwrap_or(0);
        if current < NICENESS
            && let Err(error) = rustix::process::setpriority_process(None, NICENESS)
        {
            tracing::debug!(%error, "a monitor thread keeps the server's CPU priority");
        }
    }
}

/// Starts the monitors' runtime on a thread of its own, running `main` until it returns; its handle, or `None`
/// when the runtime could not be built (the caller then runs monitors on its own runtime).
pub(crate) fn start(main: impl Future<Output = ()> + Send + 'static) -> Option<tokio::runtime::Handle> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("loopline-monitors".into())
        .spawn(move || {
            let built = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(THREAD_NAME)
                .enable_all()
                .build();
            let runtime = match built {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::warn!(%error, "the monitors' runtime could not start; monitors share the server's");
                    return;
                }
            };
            if sender.send(runtime.handle().clone()).is_ok() {
                runtime.block_on(main);
            }
        });
    match spawned {
        Ok(_) => receiver.recv().ok(),
        Err(error) => {
            tracing::warn!(%error, "the monitors' thread could not start; monitors share the server's runtime");
            None
        }
    }
}

impl Monitoring {
    /// Runs `work` on the monitors' runtime when it is started (else where it is called) and waits for it.
    pub(crate) async fn in_background<T, F, Fut>(self: &Arc<Monitoring>, work: F) -> Result<T, MonitorError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Monitoring>) -> Fut,
        Fut: Future<Output = Result<T, MonitorError>> + Send + 'static,
    {
        let running = work(self.clone());
        match self.background.get() {
            Some(handle) => handle
                .spawn(running)
                .await
                .unwrap_or_else(|e| Err(MonitorError::Internal(format!("monitor work stopped: {e}")))),
            None => running.await,
        }
    }
}
