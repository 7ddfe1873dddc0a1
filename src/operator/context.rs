use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource};
use tracing::warn;

use super::authority_cache::AuthorityCache;
use super::metrics::Metrics;
use crate::api::{CertificateAuthority, ClusterCertificate};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// The operator's namespace: CA Secrets live here.
    pub namespace: String,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub authorities: AuthorityCache,
    /// CertificateAuthorities as the CA controller's reflector sees them.
    pub cas: Store<CertificateAuthority>,
    /// ClusterCertificates as their controller's reflector sees them.
    pub certificates: Store<ClusterCertificate>,
}

impl Context {
    pub fn new(
        client: Client,
        namespace: String,
        metrics: Arc<Metrics>,
        cas: Store<CertificateAuthority>,
        certificates: Store<ClusterCertificate>,
    ) -> Self {
        let reporter = Reporter {
            controller: "certop".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            namespace,
            metrics,
            authorities: AuthorityCache::default(),
            cas,
            certificates,
        }
    }

    pub fn operator_secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Records an Event on a (cluster-scoped) object; Events land in the
    /// `default` namespace, where `kubectl describe` finds them. A failure to
    /// record is logged, never fatal. The recorder folds Events with the same
    /// reason and action into one series, so `action` tells apart those that
    /// must each be seen (one per issued revision).
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(truncate(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(error = %e, reason, "cannot record event");
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
