//! certop runs a Kubernetes cluster's internal PKI: certificate authorities,
//! control-plane and node certificates, renewal and revocation.

pub mod api;
pub mod atomic_file;
pub mod backup;
pub mod cli;
pub mod core;
pub mod kms;
pub mod list_pages;
pub mod operator;
pub mod pki;
