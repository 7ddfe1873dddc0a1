/// Errors of the operator's I/O edges. They never carry key material: the
/// PKI core's errors do not, and Kubernetes errors only name objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("{what}: {source}")]
    Pki {
        what: String,
        source: crate::pki::PkiError,
    },
    #[error("cannot serialize status: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("cannot install the aws-lc-rs crypto provider")]
    CryptoProvider,
    #[error("cannot start the HTTP server on {addr}: {source}")]
    Http {
        addr: String,
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Lease(String),
    #[error("lost the leader lease; stopping so that nothing more is written")]
    LostLeadership,
    #[error("{0}")]
    Ledger(#[from] crate::operator::store::ledger_store::LedgerError),
    #[error("{0}")]
    CrlNumberExhausted(String),
    #[error("a signing task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Startup(String),
}

impl Error {
    /// The API server answered with this HTTP status.
    pub fn is_status(&self, code: u16) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == code)
    }
}
