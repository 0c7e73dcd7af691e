//! The HTTP server of long-running commands (`--http ADDR:PORT` or `kafka.http.listen`), on
//! axum: `/health`, `/ready`, `/metrics`, `/stats`, and `POST /topics/{topic}` when
//! `kafka.http.produce` is on, with the original's paths (`/@consumer-stat`,
//! `/@kafka-producer/{topic}`) as aliases.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{metrics, ready};
use crate::app::consumer_stat::GroupOffsetsReport;
use crate::error::Error;
use crate::produce::producer::{producer, DeliveryReport};
use crate::worker::state::running_states;

/// Request headers with this prefix become the sent message's headers (prefix removed).
pub(crate) const HEADER_PREFIX: &str = "kafka-header-";
/// The default body limit of `POST /topics/{topic}`.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// How the server is set up (merged from the command line, config.json and the environment).
#[derive(Clone)]
pub(crate) struct HttpSettings {
    pub(crate) listen: String,
    /// Where `listen` came from, for error messages.
    pub(crate) listen_source: String,
    /// The bearer token `POST /topics/{topic}` requires, if any.
    pub(crate) token: Option<String>,
    pub(crate) produce: bool,
    pub(crate) max_body_bytes: usize,
    /// What `consumer-stat --json` gives for the process's workers, for `/stats`.
    pub(crate) group_offsets: Option<Arc<GroupOffsetsReport>>,
}

/// The running server; stopped when dropped.
pub(crate) struct Server {
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Binds the address and serves until the returned [`Server`] is dropped. Turns the metrics
/// on.
pub(crate) async fn start(settings: HttpSettings) -> Result<Server, Error> {
    metrics::enable();
    let listener = tokio::net::TcpListener::bind(&settings.listen).await.map_err(|err| {
        Error::Config(format!(
            "cannot start the HTTP server on {} (from {}): {err}; give another ADDR:PORT",
            settings.listen, settings.listen_source
        ))
    })?;
    let address = listener.local_addr().map_err(|err| Error::Config(format!("the HTTP server's address: {err}")))?;
    tracing::info!(
        "HTTP server on http://{address}: /health /ready /metrics /stats{}",
        if settings.produce { " and POST /topics/{topic}" } else { "" }
    );
    let max_body = settings.max_body_bytes;
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(readiness))
        .route("/metrics", get(prometheus_text))
        .route("/stats", get(stats))
        .route("/@consumer-stat", get(stats))
        .route("/topics/{topic}", produce(false))
        .route("/@kafka-producer/{topic}", produce(true))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Arc::new(settings));
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let serving = axum::serve(listener, app).with_graceful_shutdown(stopped.cancelled_owned());
        if let Err(err) = serving.await {
            tracing::error!("the HTTP server stopped: {err}");
        }
    });
    Ok(Server { stop })
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readiness() -> Response {
    let readiness = ready::check();
    let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(readiness)).into_response()
}

async fn prometheus_text() -> Response {
    let text = metrics::get().map(|m| m.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /stats`: per worker, the original's counters (`count`, and per topic the last
/// message's offset, partition and timestamp), with what the worker owns and how far behind
/// it is.
#[derive(Serialize)]
struct WorkerStats {
    group: String,
    /// Messages handled.
    count: u64,
    topics: BTreeMap<String, TopicStats>,
    assigned: Vec<(String, i32)>,
    in_flight: i64,
    /// Per partition, from librdkafka's statistics (every 5 s).
    lag: Vec<PartitionLag>,
    /// The worker's groups as `consumer-stat --json` shows them: committed offsets, log
    /// start and end, lag, as the broker reports them now.
    group_offsets: serde_json::Value,
}

#[derive(Serialize)]
struct TopicStats {
    count: u64,
    failed: u64,
    retried: u64,
    dead_lettered: u64,
    offset: Option<i64>,
    partition: Option<i32>,
    timestamp: Option<i64>,
}

#[derive(Serialize)]
struct PartitionLag {
    topic: String,
    partition: i32,
    lag: i64,
}

async fn stats(State(settings): State<Arc<HttpSettings>>) -> Json<BTreeMap<String, WorkerStats>> {
    use std::sync::atomic::Ordering::Relaxed;
    let group_offsets = match &settings.group_offsets {
        Some(report) => report.by_worker().await.map_err(|err| err.to_string()),
        None => Ok(Vec::new()),
    };
    let offsets_of = |name: &str| match &group_offsets {
        Ok(workers) => workers.iter().find(|w| w["worker"] == name).cloned().unwrap_or(serde_json::Value::Null),
        Err(err) => serde_json::json!({"error": err}),
    };
    let known = |value: i64| (value >= 0).then_some(value);
    let workers = running_states()
        .iter()
        .map(|state| {
            let topics: BTreeMap<String, TopicStats> = state
                .topics()
                .iter()
                .map(|t| {
                    let stats = TopicStats {
                        count: t.handled.load(Relaxed),
                        failed: t.failed.load(Relaxed),
                        retried: t.retried.load(Relaxed),
                        dead_lettered: t.dead_lettered.load(Relaxed),
                        offset: known(t.last_offset.load(Relaxed)),
                        partition: known(i64::from(t.last_partition.load(Relaxed))).map(|p| p as i32),
                        timestamp: known(t.last_timestamp.load(Relaxed)),
                    };
                    (t.topic.to_string(), stats)
                })
                .collect();
            let status = state.status();
            let lag =
                state.lag().into_iter().map(|(topic, partition, lag)| PartitionLag { topic, partition, lag }).collect();
            let stats = WorkerStats {
                group: status.group,
                count: topics.values().map(|t| t.count).sum(),
                topics,
                assigned: status.assigned,
                in_flight: state.in_flight(),
                lag,
                group_offsets: offsets_of(state.name()),
            };
            (status.label, stats)
        })
        .collect();
    Json(workers)
}

/// The optional parts of a message sent over HTTP.
#[derive(Deserialize)]
struct ProduceQuery {
    key: Option<String>,
    partition: Option<i32>,
}

fn refusal(status: StatusCode, error: impl std::fmt::Display) -> Response {
    (status, Json(serde_json::json!({"error": error.to_string()}))).into_response()
}

/// `POST` of a message to `{topic}`: the delivery report, or as the original answered
/// (`{sent, result}`).
fn produce(as_the_original: bool) -> MethodRouter<Arc<HttpSettings>> {
    post(
        move |State(settings): State<Arc<HttpSettings>>,
              Path(topic): Path<String>,
              Query(query): Query<ProduceQuery>,
              headers: HeaderMap,
              body: Bytes| async move {
            match send(&settings, &topic, &query, &headers, &body).await {
                Ok(report) if as_the_original => {
                    Json(serde_json::json!({"sent": true, "result": report_json(&report)})).into_response()
                }
                Ok(report) => Json(report_json(&report)).into_response(),
                Err(refused) => refused,
            }
        },
    )
}

fn report_json(report: &DeliveryReport) -> serde_json::Value {
    serde_json::json!({
        "topic": report.topic,
        "partition": report.partition,
        "offset": report.offset,
        "timestamp": report.timestamp,
    })
}

/// Checks the request, then sends its body with the shared producer and waits for the
/// delivery report.
async fn send(
    settings: &HttpSettings,
    topic: &str,
    query: &ProduceQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DeliveryReport, Response> {
    if !settings.produce {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            "sending over HTTP is off: set kafka.http.produce to true in config.json",
        ));
    }
    if let Some(token) = &settings.token {
        let given =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes())) {
            let mut refused = refusal(
                StatusCode::UNAUTHORIZED,
                "a missing or wrong bearer token: send `Authorization: Bearer <token>`",
            );
            refused.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return Err(refused);
        }
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| refusal(StatusCode::BAD_REQUEST, format_args!("the body is not JSON: {err}")))?;
    let mut message = producer().message(topic, &value);
    if let Some(key) = &query.key {
        message = message.key(key);
    }
    if let Some(partition) = query.partition {
        message = message.partition(partition);
    }
    for (name, value) in headers {
        if let Some(name) = name.as_str().strip_prefix(HEADER_PREFIX) {
            message = message.header(name, value.as_bytes());
        }
    }
    message.send().await.map_err(|err| refusal(StatusCode::BAD_GATEWAY, format_args!("not sent to `{topic}`: {err}")))
}

/// Compares a given secret with the expected one in time that does not depend on where
/// they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}
