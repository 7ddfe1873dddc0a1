//! The operator's Prometheus metrics. What describes certificates and CAs is
//! collected from the shared stores at scrape time, so every replica, leader
//! or standby, exports the same values, in the shape cert-manager's
//! dashboards and alerts use; what counts work done (issuances, failures,
//! reconciles, revocations, CRLs) is counted where it happens.

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::CertificateAuthority;
use crate::operator::runtime::certificate_store::{CertificateStore, Summary};

/// cert-manager's labels: the certificate, the namespace of its Secret, its issuer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    pub name: String,
    pub namespace: String,
    pub issuer_name: String,
    pub issuer_kind: String,
    pub issuer_group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    pub name: String,
    pub namespace: String,
    pub issuer_name: String,
    pub issuer_kind: String,
    pub issuer_group: String,
    pub condition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthorityLabels {
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthorityConditionLabels {
    pub name: String,
    pub r#type: String,
    pub status: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// The operator's Prometheus metrics, served at `/metrics` (OpenMetrics).
pub struct Metrics {
    registry: Registry,
    crl_number: Family<AuthorityLabels, Gauge>,
    crl_this_update: Family<AuthorityLabels, Gauge>,
    crl_next_update: Family<AuthorityLabels, Gauge>,
    crl_entries: Family<AuthorityLabels, Gauge>,
    ledger_unreadable: Family<AuthorityLabels, Gauge>,
    ledger_largest_shard: Family<AuthorityLabels, Gauge>,
    revocations: Family<ReasonLabels, Counter>,
    issuances: Family<ReasonLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
    reconcile_duration: Family<ControllerLabels, Histogram>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    authz_reviews: Family<VerdictLabels, Counter>,
    authz_revoked: Gauge,
    authz_ready: Gauge,
    authz_unreadable: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("certop");
        let m = Metrics {
            crl_number: Family::default(),
            crl_this_update: Family::default(),
            crl_next_update: Family::default(),
            crl_entries: Family::default(),
            ledger_unreadable: Family::default(),
            ledger_largest_shard: Family::default(),
            revocations: Family::default(),
            issuances: Family::default(),
            failures: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            reconcile_errors: Family::default(),
            authz_reviews: Family::default(),
            authz_revoked: Gauge::default(),
            authz_ready: Gauge::default(),
            authz_unreadable: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "crl_number",
            "Number of each CA's current CRL",
            m.crl_number.clone(),
        );
        registry.register(
            "crl_this_update_timestamp_seconds",
            "thisUpdate of each CA's current CRL",
            m.crl_this_update.clone(),
        );
        registry.register(
            "crl_next_update_timestamp_seconds",
            "nextUpdate of each CA's current CRL",
            m.crl_next_update.clone(),
        );
        registry.register(
            "crl_entries",
            "Revoked certificates listed in each CA's current CRL",
            m.crl_entries.clone(),
        );
        registry.register(
            "ledger_unreadable_shards",
            "Ledger shards of each CA that cannot be parsed (certop will not overwrite them)",
            m.ledger_unreadable.clone(),
        );
        registry.register(
            "ledger_largest_shard_bytes",
            "Size of each CA's largest ledger shard (new entries stop at 921600)",
            m.ledger_largest_shard.clone(),
        );
        registry.register(
            "revocations",
            "Certificates revoked, by reason",
            m.revocations.clone(),
        );
        registry.register(
            "issuances",
            "Certificates issued, by reason",
            m.issuances.clone(),
        );
        registry.register(
            "issuance_failures",
            "Failed issuances, by reason",
            m.failures.clone(),
        );
        register_process(&mut registry, &m);
        Metrics { registry, ..m }
    }
}

/// The metrics of the process itself: reconciles and the webhook.
fn register_process(registry: &mut Registry, m: &Metrics) {
    registry.register(
        "reconcile_duration_seconds",
        "Time spent in one reconcile (its count is the reconciles done), by controller",
        m.reconcile_duration.clone(),
    );
    registry.register(
        "reconcile_errors",
        "Reconciles that failed and were retried with backoff, by controller",
        m.reconcile_errors.clone(),
    );
    registry.register(
        "authz_reviews",
        "SubjectAccessReviews the authorization webhook answered, by verdict (denied, no_opinion, not_ready)",
        m.authz_reviews.clone(),
    );
    registry.register(
        "authz_revoked_credentials",
        "Revoked certificate digests this replica's webhook refuses",
        m.authz_revoked.clone(),
    );
    registry.register(
        "authz_unreadable_shards",
        "Ledger shards this replica's webhook cannot parse: the revoked certificates they record may be let through",
        m.authz_unreadable.clone(),
    );
    registry.register(
        "authz_index_ready",
        "1 when this replica's webhook has listed the ledger and the revocations (before that it answers with an error)",
        m.authz_ready.clone(),
    );
}

impl Metrics {
    pub fn forget_authority(&self, name: &str) {
        let labels = AuthorityLabels {
            name: name.to_string(),
        };
        for family in [
            &self.crl_number,
            &self.crl_this_update,
            &self.crl_next_update,
            &self.crl_entries,
            &self.ledger_unreadable,
            &self.ledger_largest_shard,
        ] {
            family.remove(&labels);
        }
    }

    pub fn crl(&self, ca: &str, crl: &crate::operator::store::crl::served::PublishedCrl) {
        let labels = AuthorityLabels {
            name: ca.to_string(),
        };
        self.crl_number
            .get_or_create(&labels)
            .set(i64::try_from(crl.number).unwrap_or(i64::MAX));
        self.crl_this_update
            .get_or_create(&labels)
            .set(crl.this_update.timestamp());
        self.crl_next_update
            .get_or_create(&labels)
            .set(crl.next_update.timestamp());
        self.crl_entries
            .get_or_create(&labels)
            .set(i64::try_from(crl.entries).unwrap_or(i64::MAX));
    }

    pub fn ledger(&self, ca: &str, unreadable_shards: usize, largest_shard_bytes: usize) {
        let labels = AuthorityLabels {
            name: ca.to_string(),
        };
        self.ledger_unreadable
            .get_or_create(&labels)
            .set(i64::try_from(unreadable_shards).unwrap_or(i64::MAX));
        self.ledger_largest_shard
            .get_or_create(&labels)
            .set(i64::try_from(largest_shard_bytes).unwrap_or(i64::MAX));
    }

    pub fn revoked(&self, reason: &str, count: u64) {
        self.revocations
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc_by(count);
    }

    pub fn issued(&self, reason: &str) {
        self.issuances
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn failed(&self, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn authz_review(&self, verdict: &str) {
        self.authz_reviews
            .get_or_create(&VerdictLabels {
                verdict: verdict.to_string(),
            })
            .inc();
    }

    pub fn authz_index(&self, revoked: usize, ready: bool, unreadable_shards: usize) {
        self.authz_revoked
            .set(i64::try_from(revoked).unwrap_or(i64::MAX));
        self.authz_ready.set(i64::from(ready));
        self.authz_unreadable
            .set(i64::try_from(unreadable_shards).unwrap_or(i64::MAX));
    }

    pub fn reconcile_error(&self, controller: &str) {
        self.reconcile_errors
            .get_or_create(&ControllerLabels {
                controller: controller.to_string(),
            })
            .inc();
    }

    /// Exports what the stores say of every certificate and CA at each scrape.
    pub fn collect_from(
        &mut self,
        cas: Store<CertificateAuthority>,
        certificates: CertificateStore,
    ) {
        self.registry
            .register_collector(Box::new(StoreCollector { cas, certificates }));
    }

    pub fn reconciled(&self, controller: &str, seconds: f64) {
        self.reconcile_duration
            .get_or_create(&ControllerLabels {
                controller: controller.to_string(),
            })
            .observe(seconds);
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Certificates and CAs as the stores hold them, encoded at scrape time.
#[derive(Debug)]
struct StoreCollector {
    cas: Store<CertificateAuthority>,
    certificates: CertificateStore,
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let certs = self.certificates.summaries();
        gauge(
            &mut encoder,
            "certificate_expiration_timestamp_seconds",
            "notAfter of each ClusterCertificate's current certificate",
            certs.iter().filter_map(|(name, c)| {
                Some((certificate_labels(name, c), c.not_after?.timestamp()))
            }),
        )?;
        gauge(
            &mut encoder,
            "certificate_renewal_timestamp_seconds",
            "When certop renews each ClusterCertificate",
            certs.iter().filter_map(|(name, c)| {
                Some((certificate_labels(name, c), c.renewal_time?.timestamp()))
            }),
        )?;
        gauge(
            &mut encoder,
            "certificate_ready_status",
            "1 for the Ready condition's status of each ClusterCertificate (True, False, Unknown), else 0",
            certs.iter().flat_map(|(name, c)| ready_status(name, c)),
        )?;
        gauge(
            &mut encoder,
            "ca_expiration_timestamp_seconds",
            "notAfter of each CertificateAuthority's certificate",
            self.cas.state().iter().filter_map(|ca| {
                let t = ca.status.as_ref()?.not_after?;
                Some((
                    AuthorityLabels {
                        name: ca.name_any(),
                    },
                    t.timestamp(),
                ))
            }),
        )?;
        gauge(
            &mut encoder,
            "ca_condition",
            "1 for each condition of each CertificateAuthority, with its type, status and reason (a blocked rotation: type Rotation, reason RotationBlocked)",
            self.cas.state().iter().flat_map(|ca| {
                let name = ca.name_any();
                ca.status
                    .as_ref()
                    .map(|s| s.conditions.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |c| {
                        let labels = AuthorityConditionLabels {
                            name: name.clone(),
                            r#type: c.type_,
                            status: c.status,
                            reason: c.reason,
                        };
                        (labels, 1)
                    })
            }),
        )?;
        Ok(())
    }
}

/// One gauge family: a value per label set.
fn gauge<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for (labels, value) in values {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn certificate_labels(name: &str, c: &Summary) -> CertificateLabels {
    CertificateLabels {
        name: name.into(),
        namespace: c.secret_namespace.to_string(),
        issuer_name: c.issuer.to_string(),
        issuer_kind: "CertificateAuthority".into(),
        issuer_group: crate::api::GROUP.into(),
    }
}

/// A certificate's Ready status as three series (True, False, Unknown), the
/// one it has at 1.
fn ready_status(name: &str, c: &Summary) -> Vec<(ReadyLabels, i64)> {
    let status = c.ready.as_str();
    ["True", "False", "Unknown"]
        .into_iter()
        .map(|condition| {
            let l = certificate_labels(name, c);
            let labels = ReadyLabels {
                name: l.name,
                namespace: l.namespace,
                issuer_name: l.issuer_name,
                issuer_kind: l.issuer_kind,
                issuer_group: l.issuer_group,
                condition: condition.into(),
            };
            (labels, i64::from(status == condition))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::Metrics;
    use crate::operator::store::crl::served::PublishedCrl;

    /// The certop metric families a PromQL text names (`_total`,
    /// `_bucket`, `_count` and `_sum` belong to their family).
    fn named_families(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (start, _) in text.match_indices("certop_") {
            if start > 0 && text.as_bytes()[start - 1].is_ascii_alphanumeric() {
                continue;
            }
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            out.insert(family.to_string());
        }
        out
    }

    /// A renamed metric must not silence an alert or blank a panel.
    #[test]
    fn every_metric_the_charts_alerts_and_dashboard_name_is_exported() {
        let mut metrics = Metrics::default();
        let (cas, _) = kube::runtime::reflector::store();
        metrics.collect_from(cas, Default::default());
        let now = chrono::Utc::now();
        metrics.crl(
            "ca",
            &PublishedCrl {
                der: Vec::new(),
                pem: String::new(),
                number: 1,
                this_update: now,
                next_update: now,
                entries: 0,
                stored: true,
                serials: Default::default(),
                not_after: Default::default(),
                incomplete: None,
            },
        );
        metrics.ledger("ca", 0, 0);
        metrics.revoked("keyCompromise", 1);
        metrics.issued("Issued");
        metrics.failed("PolicyViolation");
        metrics.authz_review("denied");
        metrics.authz_index(0, true, 0);
        metrics.reconcile_error("clustercertificate");
        metrics.reconciled("clustercertificate", 0.01);
        let exported: BTreeSet<String> = metrics
            .encode()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        for (file, text) in [
            (
                "certop-alerts.yaml",
                include_str!("../../../charts/certop/files/certop-alerts.yaml"),
            ),
            (
                "certop-dashboard.json",
                include_str!("../../../charts/certop/files/certop-dashboard.json"),
            ),
        ] {
            let named = named_families(text);
            assert!(named.len() >= 8, "{file}: {named:?}");
            let unknown: Vec<&String> = named.difference(&exported).collect();
            assert!(
                unknown.is_empty(),
                "{file} names metrics certop does not export: {unknown:?}; exported: {exported:?}"
            );
        }
    }
}
