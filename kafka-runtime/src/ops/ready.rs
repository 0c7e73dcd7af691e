//! Readiness: every worker of the process has joined its group and has looked for messages
//! within its `max.poll.interval.ms`, and some broker answers.

use serde::Serialize;

use crate::worker::state::{running_states, WorkerState};

/// The answer of `GET /ready`.
#[derive(Debug, Serialize)]
pub(crate) struct Readiness {
    pub(crate) ready: bool,
    pub(crate) workers: Vec<WorkerReadiness>,
    /// Why not, when nothing runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct WorkerReadiness {
    pub(crate) worker: String,
    pub(crate) group: String,
    pub(crate) ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

pub(crate) fn check() -> Readiness {
    let workers: Vec<WorkerReadiness> = running_states().iter().map(|state| worker(state)).collect();
    if workers.is_empty() {
        return Readiness { ready: false, workers, reason: Some("no worker is running yet".into()) };
    }
    Readiness { ready: workers.iter().all(|w| w.ready), workers, reason: None }
}

fn worker(state: &WorkerState) -> WorkerReadiness {
    let reason = if let Some(reason) = state.stop_reason() {
        Some(format!("stopped: {reason}"))
    } else if let Some(reason) = state.unreachable() {
        Some(reason)
    } else if !state.is_joined() {
        Some("not in its group: joining, or a rebalance is under way".to_owned())
    } else {
        let since = state.since_poll();
        let limit = state.max_poll_interval();
        (since > limit).then(|| {
            format!(
                "has not looked for messages for {} s (max.poll.interval.ms is {} ms): a handler may be stuck",
                since.as_secs(),
                limit.as_millis()
            )
        })
    };
    WorkerReadiness {
        worker: state.label().to_owned(),
        group: state.group().to_owned(),
        ready: reason.is_none(),
        reason,
    }
}
