//! The operator's side: what each handled message records (`observe`), the app's hooks around
//! every message (`hooks`), Prometheus metrics (`metrics`), readiness (`ready`) and the HTTP
//! server that serves them (`http`).

pub mod hooks;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod observe;
pub(crate) mod ready;
