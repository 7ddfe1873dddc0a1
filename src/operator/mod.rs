//! The operator: thin controllers around the pure core. Each reconciler
//! reads state, asks `pki`/`plan` what to do, writes the Secret, then the
//! status, records Events and requeues at the next moment that matters.

pub mod admission_guard;
mod authority_cache;
mod backoff;
pub mod certificate;
pub mod certificate_authority;
pub mod certificate_revocation;
mod conditions;
mod context;
mod crl;
mod error;
#[cfg(test)]
mod fake_api;
mod finalize;
mod http;
mod ledger_store;
pub mod managed_namespaces;
pub mod metrics;
mod rate_limit;
pub mod reason;
mod run;
#[cfg(test)]
mod scenarios;
mod shared_store;
pub mod signing_request;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod untrusted_input;
mod watch_backoff;

pub use context::{Context, Stores};
pub use error::Error;
pub use run::{LogFormat, RunArgs, run};
