//! Whether the API server serves what `spec.podCertificates` needs:
//! PodCertificateRequests and ClusterTrustBundles of
//! `certificates.k8s.io/v1beta1` (beta in 1.35-1.36, off by default).
//! Found once at start, from discovery: enabling them restarts
//! kube-apiserver, after which certop is restarted too.

use kube::Client;
use tracing::{info, warn};

/// The API version certop uses for both kinds.
pub const GROUP_VERSION: &str = "certificates.k8s.io/v1beta1";

/// The kube-apiserver flags that serve both kinds (1.35-1.36).
pub const ENABLE_FLAGS: &str = "--feature-gates=PodCertificateRequest=true,ClusterTrustBundle=true,ClusterTrustBundleProjection=true --runtime-config=certificates.k8s.io/v1beta1=true";

/// What discovery showed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodCertificateApi {
    pub requests: bool,
    pub trust_bundles: bool,
}

impl PodCertificateApi {
    /// Both served, as a test or a cluster that enabled them.
    pub const SERVED: PodCertificateApi = PodCertificateApi {
        requests: true,
        trust_bundles: true,
    };

    /// Asks discovery; an error (the group version not served at all)
    /// counts as neither served.
    pub async fn discover(client: &Client) -> PodCertificateApi {
        let api = match client.list_api_group_resources(GROUP_VERSION).await {
            Ok(list) => {
                let served = |name: &str| list.resources.iter().any(|r| r.name == name);
                PodCertificateApi {
                    requests: served("podcertificaterequests"),
                    trust_bundles: served("clustertrustbundles"),
                }
            }
            Err(_) => PodCertificateApi::default(),
        };
        match api.missing() {
            None => info!(
                group_version = GROUP_VERSION,
                "PodCertificateRequests and ClusterTrustBundles served"
            ),
            Some(message) => warn!(%message, "CertificateAuthorities' spec.podCertificates wait"),
        }
        api
    }

    /// What is missing, in words that say how to enable it; None when
    /// both are served.
    pub fn missing(&self) -> Option<String> {
        let missing: Vec<&str> = [
            (!self.requests).then_some("PodCertificateRequests"),
            (!self.trust_bundles).then_some("ClusterTrustBundles"),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "the API server does not serve {} ({GROUP_VERSION}): start kube-apiserver with {ENABLE_FLAGS}, then restart certop",
                missing.join(" or ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_what_is_missing_and_the_flags() {
        assert_eq!(PodCertificateApi::SERVED.missing(), None);
        let none = PodCertificateApi::default().missing().expect("missing");
        assert!(
            none.contains("PodCertificateRequests or ClusterTrustBundles"),
            "{none}"
        );
        assert!(
            none.contains("--feature-gates=PodCertificateRequest=true"),
            "{none}"
        );
        assert!(
            none.contains("--runtime-config=certificates.k8s.io/v1beta1=true"),
            "{none}"
        );
        let bundles = PodCertificateApi {
            requests: true,
            trust_bundles: false,
        };
        assert!(
            bundles
                .missing()
                .expect("missing")
                .contains("serve ClusterTrustBundles (")
        );
    }

    /// `make dev-up PODCERTS=1` starts kube-apiserver with the flags
    /// certop names (the integration tests take them from ENABLE_FLAGS).
    #[test]
    fn the_dev_control_plane_enables_the_flags_certop_names() {
        let script = include_str!("../../../scripts/dev-control-plane.sh");
        assert!(
            script.contains(&format!("PODCERT_FLAGS=\"{ENABLE_FLAGS}\"")),
            "scripts/dev-control-plane.sh"
        );
    }
}
