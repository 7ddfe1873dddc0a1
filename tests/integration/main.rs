//! Integration tests against a real kube-apiserver and etcd, driven with the
//! real kubectl. One binary, so one control plane serves them all.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

#[path = "../common/mod.rs"]
mod common;

mod api_server;
mod api_versions;
mod backup_restore;
mod csr;
mod enforced_revocation;
mod helm_chart;
mod kubelet;
mod kubelet_revocation;
mod least_privilege;
mod node_revocation;
mod objects;
mod operator;
mod pod_certificates;
mod policy;
mod rbac_allowance;
mod revocation;
mod revocation_latency;
mod support;
mod upgrade;
