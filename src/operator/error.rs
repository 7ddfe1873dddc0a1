/// Errors of the operator's I/O edges. They never carry key material: the
/// PKI core's errors do not, and Kubernetes errors only name objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing certop's finalizer failed (the API server's
    /// answer says why); the pass is retried.
    #[error("finalizer: {0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
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
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("leader election: the lease manager stopped")]
    LeaseManagerStopped,
    #[error("lost the leader lease; stopping so that nothing more is written")]
    LostLeadership,
    #[error("{0}")]
    Ledger(#[from] crate::operator::store::ledger_store::LedgerError),
    /// The shared ledger write of a group of records failed (another
    /// pass made it and got the API server's answer): nothing of the
    /// group was recorded, and the pass is retried.
    #[error("the ledger write of this certificate's group failed: {0}")]
    LedgerGroupWrite(String),
    #[error("{0}")]
    CrlNumberExhausted(String),
    #[error("a signing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Neither in a pod (a service account) nor given a KUBECONFIG.
    #[error("cannot configure a Kubernetes client (in-cluster or KUBECONFIG): {0}")]
    KubeConfig(#[from] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    KubeClient(#[source] kube::Error),
    #[error("cannot reach the Kubernetes API server: {0}")]
    ApiServerUnreachable(#[source] kube::Error),
    #[error(
        "namespace {0} does not exist: create it (kubectl create namespace {0}) or set --namespace"
    )]
    NamespaceMissing(String),
    #[error("cannot read namespace {namespace}: {source}")]
    NamespaceUnreadable {
        namespace: String,
        source: kube::Error,
    },
}

impl Error {
    /// The API server answered with this HTTP status.
    pub fn is_status(&self, code: u16) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == code)
    }
}
