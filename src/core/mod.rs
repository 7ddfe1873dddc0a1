//! The decisions of certop, pure and without a Kubernetes client: what to
//! issue and when (`plan`), what a CA issued and revoked (`ledger`), a CA
//! rotation's next step (`rotation`), who may get which identity
//! (`policy`), what a CertificateSigningRequest may get (`csr`), what a pod's
//! PodCertificateRequest gets (`pod_certificate`) and kubeadm's node layout (`node`). The operator and the command line call
//! them with what they observed and the clock; everything here is tested
//! with tables.

pub mod authz;
pub mod csr;
pub mod enforcement;
pub mod ledger;
pub mod node;
pub mod plan;
pub mod pod_certificate;
pub mod policy;
pub mod rotation;
