//! `certop run`: the operator's flags (each also settable from the
//! environment), resolved into the plain [`RunConfig`] the operator runs
//! with.

use std::net::SocketAddr;

use ipnet::IpNet;

use crate::core::csr::kubelet_serving::{DnsPattern, ServingNameRules};
use crate::operator::authz::AuthzSettings;
use crate::operator::signing_request::CsrPolicy;
use crate::operator::{LeaderElection, LogFormat, RunConfig};
use crate::pki::DEFAULT_SERVICE_CIDR;

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    #[default]
    Text,
    Json,
}

/// A QPS flag that is not a rate certop can use.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a number of requests per second from 0 (no limit) to 100000")]
pub struct QpsError(String);

/// A QPS flag: a number from 0 (no limit) to 100,000.
fn parse_qps(s: &str) -> Result<f64, QpsError> {
    match s.parse::<f64>() {
        Ok(q) if (0.0..=100_000.0).contains(&q) => Ok(q),
        _ => Err(QpsError(s.to_string())),
    }
}

/// `certop run`: flags, each also settable from the environment.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// The operator's namespace: CA Secrets and the leader Lease live here.
    #[arg(long, env = "CERTOP_NAMESPACE", default_value = "certop-system")]
    pub namespace: String,
    /// Address of the HTTP server (/metrics, /healthz, /readyz).
    #[arg(long, env = "CERTOP_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Elect a leader among replicas with a Lease; only the leader reconciles.
    #[arg(long, env = "CERTOP_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    #[arg(long, env = "CERTOP_LEASE_NAME", default_value = "certop-leader")]
    pub lease_name: String,
    /// Seconds a leader's lease lasts without renewal: the failover time (3 to 3600).
    #[arg(long, env = "CERTOP_LEASE_DURATION", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_duration: u64,
    /// Objects reconciled at once per controller: bounds the API request
    /// rate and the CPU a burst of issuances takes (key generation and
    /// signing run off the async workers).
    #[arg(long, env = "CERTOP_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Kubernetes API requests per second, sustained (client-go's QPS); 0
    /// for no limit. The leader lease has its own client, never held back.
    #[arg(long, env = "CERTOP_KUBE_API_QPS", default_value_t = 1000.0, value_parser = parse_qps)]
    pub kube_api_qps: f64,
    /// Kubernetes API requests allowed at once before the QPS applies.
    #[arg(long, env = "CERTOP_KUBE_API_BURST", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub kube_api_burst: u32,
    /// This replica's identity in the Lease. Default: the pod name, else host and pid.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[arg(long, env = "CERTOP_LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
    /// Base URL of the CRLs this operator serves, written into issued
    /// certificates as `<base>/crl/<ca>.crl` unless a CA sets its own.
    /// Default: the operator Service, `http://certop.<namespace>.svc`.
    #[arg(long, env = "CERTOP_CRL_BASE_URL")]
    pub crl_base_url: Option<String>,
    /// Longest certificate signed for a CertificateSigningRequest.
    #[arg(long, env = "CERTOP_CSR_MAX_DURATION", default_value = "8760h")]
    pub csr_max_duration: crate::api::GoDuration,
    /// The CertificateAuthority that signs kubelet CSRs (signers
    /// kubernetes.io/kube-apiserver-client-kubelet and kubernetes.io/kubelet-serving).
    /// Unset: certop leaves kubelet CSRs to others.
    #[arg(long, env = "CERTOP_KUBELET_SIGNER_CA")]
    pub kubelet_signer_ca: Option<String>,
    /// Approve kubelet CSRs that pass the identity checks, deny the others.
    /// A serving CSR is approved only for names the node cannot invent (the
    /// three flags below); one with any other name is left for a person.
    #[arg(long, env = "CERTOP_APPROVE_KUBELET_CSRS", default_value_t = false, action = clap::ArgAction::Set)]
    pub approve_kubelet_csrs: bool,
    /// A regular expression (Rust regex syntax) that a kubelet serving
    /// certificate's DNS name may match whole, besides the node's own name,
    /// to be approved; `{node}` stands for the node's name, matched
    /// literally: `{node}\.nodes\.example\.com`. Unset: only the node's name.
    #[arg(long, env = "CERTOP_KUBELET_SERVING_DNS_PATTERN", value_parser = DnsPattern::parse)]
    pub kubelet_serving_dns_pattern: Option<DnsPattern>,
    /// DNS names, comma-separated, never approved for a kubelet
    /// automatically, even as a node's own name (whoever joins a node
    /// chooses its name): the API server's external name, e.g.
    /// `--kubelet-serving-reserved-names=k8s-api.example.com`.
    #[arg(
        long,
        env = "CERTOP_KUBELET_SERVING_RESERVED_NAMES",
        value_delimiter = ','
    )]
    pub kubelet_serving_reserved_names: Vec<String>,
    /// CIDRs, comma-separated (`10.0.0.0/16,fd00:10::/64`), that each IP of a
    /// kubelet serving certificate must be inside to be approved (and be no
    /// other Node's address). Unset: no IP is approved.
    #[arg(long, env = "CERTOP_KUBELET_SERVING_IP_PREFIXES", value_delimiter = ',', value_parser = crate::core::policy::pattern::parse_network)]
    pub kubelet_serving_ip_prefixes: Vec<IpNet>,
    /// The cluster's Service CIDR, or two comma-separated for dual-stack
    /// (kube-apiserver's --service-cluster-ip-range): no IP inside is ever
    /// approved for a kubelet.
    #[arg(long, env = "CERTOP_SERVICE_CIDR", value_delimiter = ',', default_value = DEFAULT_SERVICE_CIDR, value_parser = crate::core::policy::pattern::parse_network)]
    pub service_cidr: Vec<IpNet>,
    /// The namespaces certop writes certificate Secrets and trust bundles
    /// into, comma-separated: the namespaces its RBAC grants (the chart's
    /// `managedNamespaces`). A ClusterCertificate naming another namespace
    /// is refused (NamespaceNotManaged). Unset: every namespace, which
    /// needs the cluster-wide grant.
    #[arg(long, env = "CERTOP_MANAGED_NAMESPACES", value_delimiter = ',')]
    pub managed_namespaces: Vec<String>,
    /// Address of the authorization webhook (HTTPS) that refuses requests
    /// made with a revoked client certificate; every replica serves it.
    /// Unset: no webhook (revocation is published, not enforced).
    #[arg(long, env = "CERTOP_AUTHZ_ADDR", requires = "authz_ca")]
    pub authz_addr: Option<SocketAddr>,
    /// The CertificateAuthority that signs the webhook's serving
    /// certificate (held in memory, renewed daily); `certop authz-config
    /// --ca` must name the same one.
    #[arg(long, env = "CERTOP_AUTHZ_CA", requires = "authz_addr")]
    pub authz_ca: Option<String>,
    /// DNS names and IPs, comma-separated, that kube-apiserver dials the
    /// webhook by. Default: the Service `certop.<namespace>.svc` and the
    /// --authz-addr IP unless it is 0.0.0.0 or ::.
    #[arg(long, env = "CERTOP_AUTHZ_NAMES", value_delimiter = ',')]
    pub authz_names: Vec<String>,
}

impl RunArgs {
    /// The webhook's settings, when --authz-addr asks for it.
    fn authz(&self) -> Option<AuthzSettings> {
        let (addr, ca) = (self.authz_addr?, self.authz_ca.clone()?);
        let names = if self.authz_names.is_empty() {
            let mut names = vec![format!("certop.{}.svc", self.namespace)];
            if !addr.ip().is_unspecified() {
                names.push(addr.ip().to_string());
            }
            names
        } else {
            self.authz_names.clone()
        };
        Some(AuthzSettings { addr, ca, names })
    }

    /// The operator's configuration from the flags.
    pub fn config(self) -> RunConfig {
        let authz = self.authz();
        let leader_election = self.leader_elect.then_some(LeaderElection {
            lease_name: self.lease_name,
            lease_duration: self.lease_duration,
            identity: self.identity,
        });
        RunConfig {
            namespace: self.namespace,
            http_addr: self.http_addr,
            leader_election,
            concurrency: self.concurrency,
            kube_api_qps: self.kube_api_qps,
            kube_api_burst: self.kube_api_burst,
            log_format: match self.log_format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            },
            crl_base_url: self.crl_base_url,
            csr_policy: CsrPolicy {
                max_lifetime: self
                    .csr_max_duration
                    .to_chrono_with_days()
                    .unwrap_or_else(|_| chrono::Duration::hours(8760)),
                kubelet_ca: self.kubelet_signer_ca,
                approve_kubelets: self.approve_kubelet_csrs,
                kubelet_serving: ServingNameRules {
                    dns_pattern: self.kubelet_serving_dns_pattern,
                    ip_prefixes: self.kubelet_serving_ip_prefixes,
                    service_cidrs: self.service_cidr,
                    reserved_names: self.kubelet_serving_reserved_names,
                },
            },
            managed_namespaces: self.managed_namespaces,
            authz,
        }
    }
}
