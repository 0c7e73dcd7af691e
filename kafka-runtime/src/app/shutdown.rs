//! [`Shutdown`]: the signal that stops fetching, then the deadline for in-flight work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Tells running workers to stop. [`begin`](Self::begin) stops fetching and lets in-flight
/// messages finish within the drain timeout; [`abort`](Self::abort) ends the drain at once.
/// Either way, finished messages are committed before the consumers close.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Set when shutdown begins: one atomic load per message, where the token's own check
    /// takes a lock.
    begun: Arc<AtomicBool>,
    drain: CancellationToken,
    abort: CancellationToken,
    signals: bool,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also begins on SIGINT or SIGTERM once workers start, and aborts on the second one.
    pub fn on_signals() -> Self {
        Self { signals: true, ..Self::default() }
    }

    /// Stop fetching; let in-flight messages finish.
    pub fn begin(&self) {
        self.begun.store(true, Ordering::Release);
        self.drain.cancel();
    }

    /// Stop waiting for in-flight messages; they are delivered again after a restart.
    pub fn abort(&self) {
        self.begin();
        self.abort.cancel();
    }

    pub fn is_begun(&self) -> bool {
        self.begun.load(Ordering::Acquire)
    }

    /// Resolves when shutdown begins.
    pub async fn begun(&self) {
        self.drain.cancelled().await
    }

    /// Resolves on [`abort`](Self::abort): nothing more is waited for.
    pub(crate) async fn aborted(&self) {
        self.abort.cancelled().await
    }

    pub(crate) fn drain_token(&self) -> CancellationToken {
        self.drain.clone()
    }

    /// Resolves when in-flight work must be given up: `timeout` after shutdown began, or on
    /// abort.
    pub(crate) async fn deadline(&self, timeout: Duration) {
        self.drain.cancelled().await;
        tokio::select! {
            _ = tokio::time::sleep(timeout) => {}
            _ = self.abort.cancelled() => {}
        }
    }

    /// Begins shutdown on the first SIGINT or SIGTERM and aborts the drain on the second,
    /// when this was made by [`on_signals`](Self::on_signals).
    pub(crate) fn listen_for_signals_if_enabled(&self, drain_timeout: Duration) {
        if !self.signals {
            return;
        }
        let shutdown = self.clone();
        tokio::spawn(async move {
            let mut signals = match Signals::new() {
                Ok(signals) => signals,
                Err(err) => {
                    tracing::warn!("cannot listen for SIGINT/SIGTERM: {err}");
                    return;
                }
            };
            let name = signals.recv().await;
            tracing::info!(
                "{name} received: stopping; in-flight messages have {} ms to finish (send it again to stop at once)",
                drain_timeout.as_millis()
            );
            shutdown.begin();
            let name = signals.recv().await;
            tracing::warn!("{name} received again: stopping at once; unfinished messages will be delivered again");
            shutdown.abort();
        });
    }

    /// Begins shutdown on the first SIGINT or SIGTERM, when this was made by
    /// [`on_signals`](Self::on_signals): for commands with nothing in flight to drain.
    pub(crate) fn stop_on_signals_if_enabled(&self) {
        if !self.signals {
            return;
        }
        let shutdown = self.clone();
        tokio::spawn(async move {
            match Signals::new() {
                Ok(mut signals) => {
                    let name = signals.recv().await;
                    tracing::debug!("{name} received: stopping");
                    shutdown.begin();
                }
                Err(err) => tracing::warn!("cannot listen for SIGINT/SIGTERM: {err}"),
            }
        });
    }
}

struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    #[cfg(unix)]
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Self> {
        Ok(Self {})
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
