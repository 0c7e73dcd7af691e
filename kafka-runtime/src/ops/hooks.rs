//! Code the app runs around every message a per-message handler handles, registered in the
//! body of `#[kafka_main]`: timing, custom metrics, filters. The original fired a "message
//! consumed" event after each message; [`MessageHook::after`] is that event.
//!
//! ```no_run
//! use std::time::Duration;
//! use kafka_runtime::hooks::{add_message_hook, MessageEvent, MessageHook};
//! use kafka_runtime::Message;
//!
//! struct SlowLog;
//!
//! impl MessageHook for SlowLog {
//!     fn before(&self, message: &Message) -> bool {
//!         message.payload() != Some(b"ignore-me") // skipped messages count as done
//!     }
//!     fn after(&self, event: &MessageEvent<'_>) {
//!         if event.elapsed > Duration::from_millis(500) {
//!             tracing::warn!("slow message at offset {}: {:?}", event.offset, event.elapsed);
//!         }
//!     }
//! }
//!
//! #[kafka_runtime::kafka_main]
//! async fn main() {
//!     add_message_hook(SlowLog);
//! }
//! ```

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::consume::Message;
use crate::worker::error::WorkerError;

/// What a hook sees of a message once its handler returned.
#[derive(Debug)]
pub struct MessageEvent<'a> {
    /// The worker's name (with the group when it runs one consumer per topic).
    pub worker: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// How long the handler took (this try).
    pub elapsed: Duration,
    /// The handler's result.
    pub outcome: Result<(), &'a WorkerError>,
}

/// Runs around every message a per-message handler handles, on the worker's task: keep it
/// quick and never block.
pub trait MessageHook: Send + Sync + 'static {
    /// Before the handler. `false` skips the message: the handler does not see it, and it
    /// counts as done (its offset is committed).
    fn before(&self, message: &Message) -> bool {
        let _ = message;
        true
    }

    /// After the handler, with its result and how long it took.
    fn after(&self, event: &MessageEvent<'_>) {
        let _ = event;
    }
}

fn registered() -> &'static RwLock<Vec<Arc<dyn MessageHook>>> {
    static HOOKS: RwLock<Vec<Arc<dyn MessageHook>>> = RwLock::new(Vec::new());
    &HOOKS
}

/// Adds a hook for every worker started after this call (call it in `#[kafka_main]`'s body).
/// Hooks run in the order they were added; the first `before` that says `false` skips the
/// message.
pub fn add_message_hook(hook: impl MessageHook) {
    registered().write().unwrap_or_else(|e| e.into_inner()).push(Arc::new(hook));
}

/// The hooks added so far, for a worker that starts now.
pub(crate) fn snapshot() -> Vec<Arc<dyn MessageHook>> {
    registered().read().unwrap_or_else(|e| e.into_inner()).clone()
}
