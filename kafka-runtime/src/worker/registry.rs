//! The workers that `#[kafka_worker]` registered, collected at link time by `inventory`
//! (or by `linkme` with the `linkme` feature).
//!
//! A crate that nothing in the binary references is not linked, and its workers are not
//! collected: starting an unknown name is therefore an error that lists the registered ones.

use super::handler::Worker;
use crate::error::Error;

/// One `#[kafka_worker]`, as the macro wrote it down.
#[doc(hidden)]
pub struct WorkerRegistration {
    pub name: &'static str,
    pub rust_path: &'static str,
    pub group: Option<&'static str>,
    pub topics: &'static [&'static str],
    pub regex_topic: Option<&'static str>,
    /// The failure policy the attribute gave; `None` where it gave nothing.
    pub failure: FailureAttrs,
    /// A batch worker's `take` and `within_ms`, where the attribute gave them.
    pub batch: BatchAttrs,
    /// `ordering` and `max_in_flight`, where the attribute gave them.
    pub concurrency: ConcurrencyAttrs,
    pub build: fn() -> Worker,
}

/// The failure policy keys of `#[kafka_worker]`, as written.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FailureAttrs {
    pub retries: Option<u32>,
    pub retry_backoff_ms: Option<u64>,
    pub retry_backoff_max_ms: Option<u64>,
    pub dead_letter_topic: Option<&'static str>,
    pub on_decode_error: Option<&'static str>,
}

/// The batch keys of `#[kafka_worker]`, as written.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchAttrs {
    pub take: Option<u64>,
    pub within_ms: Option<u64>,
}

/// The concurrency keys of `#[kafka_worker]`, as written.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConcurrencyAttrs {
    pub ordering: Option<&'static str>,
    pub max_in_flight: Option<u64>,
}

#[cfg(not(feature = "linkme"))]
inventory::collect!(WorkerRegistration);

#[cfg(not(feature = "linkme"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __submit_worker {
    ($registration:expr) => {
        $crate::__private::inventory::submit! { $registration }
    };
}

#[cfg(feature = "linkme")]
#[doc(hidden)]
#[linkme::distributed_slice]
pub static WORKERS: [WorkerRegistration];

#[cfg(feature = "linkme")]
#[doc(hidden)]
#[macro_export]
macro_rules! __submit_worker {
    ($registration:expr) => {
        #[$crate::__private::linkme::distributed_slice($crate::__private::WORKERS)]
        #[linkme(crate = $crate::__private::linkme)]
        static REGISTRATION: $crate::__private::WorkerRegistration = $registration;
    };
}

/// Every registered worker, sorted by name. Two workers with one name are an error.
pub fn registered() -> Result<Vec<&'static WorkerRegistration>, Error> {
    #[cfg(not(feature = "linkme"))]
    let mut all: Vec<&'static WorkerRegistration> = inventory::iter::<WorkerRegistration>.into_iter().collect();
    #[cfg(feature = "linkme")]
    let mut all: Vec<&'static WorkerRegistration> = WORKERS.iter().collect();
    all.sort_by(|a, b| a.name.cmp(b.name).then(a.rust_path.cmp(b.rust_path)));
    if let Some(pair) = all.windows(2).find(|pair| pair[0].name == pair[1].name) {
        return Err(Error::Config(format!(
            "two workers are registered as `{}`: {} and {}; give one of them another `name = \"...\"`",
            pair[0].name, pair[0].rust_path, pair[1].rust_path
        )));
    }
    Ok(all)
}

impl std::fmt::Debug for WorkerRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRegistration").field("name", &self.name).field("rust_path", &self.rust_path).finish()
    }
}
