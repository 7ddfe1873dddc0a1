//! The operator: thin controllers around the pure core. Each controller's
//! pass gathers what exists, asks a pure `decide` (over `core` and `pki`)
//! what to do, makes the writes in order, derives its status, records
//! Events and requeues at the next moment that matters.
//!
//! - the controllers: `certificate`, `certificate_authority`,
//!   `certificate_revocation`, `signing_request`, `pod_certificate`;
//! - `run`: the process (flags, leader election, the controllers wired);
//! - `runtime`: what runs around the controllers (HTTP, metrics, backoff,
//!   rate limits, the shared watch stores, `Context`);
//! - `store`: what the controllers keep in the API server besides their
//!   own objects (the ledger, CRLs, the CA-key cache);
//! - `reason`, `conditions`, `error`: the words every controller uses.

pub mod authz;
pub mod certificate;
pub mod certificate_authority;
pub mod certificate_revocation;
mod conditions;
mod controllers;
mod error;
pub mod pod_certificate;
pub mod reason;
mod run;
pub mod runtime;
pub mod signing_request;
mod store;
#[cfg(test)]
pub(crate) mod testing;

pub use error::Error;
pub use run::{LeaderElection, LogFormat, RunConfig, run};
pub use runtime::context::{Context, Stores};
