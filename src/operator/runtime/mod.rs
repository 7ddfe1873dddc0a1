//! The process around the controllers: the HTTP endpoints, metrics, the shared watch stores and the
//! `Context` every pass reads, and how failures are retried.

pub(crate) mod access_review;
pub mod admission_guard;
pub(crate) mod backoff;
pub(crate) mod certificate_store;
pub(crate) mod context;
pub(crate) mod finalize;
pub(crate) mod http;
pub mod managed_namespaces;
pub mod metrics;
pub(crate) mod name_queue;
pub mod pod_certificate_api;
pub(crate) mod rate_limit;
pub(crate) mod shared_store;
pub(crate) mod watch_backoff;
