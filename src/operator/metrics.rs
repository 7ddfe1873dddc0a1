use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthorityLabels {
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// The operator's Prometheus metrics, served at `/metrics` (OpenMetrics).
pub struct Metrics {
    registry: Registry,
    certificate_expiration: Family<CertificateLabels, Gauge>,
    certificate_renewal: Family<CertificateLabels, Gauge>,
    certificate_ready: Family<CertificateLabels, Gauge>,
    authority_expiration: Family<AuthorityLabels, Gauge>,
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
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("certop");
        let m = Metrics {
            certificate_expiration: Family::default(),
            certificate_renewal: Family::default(),
            certificate_ready: Family::default(),
            authority_expiration: Family::default(),
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
            registry: Registry::default(),
        };
        registry.register(
            "certificate_expiration_timestamp_seconds",
            "notAfter of each ClusterCertificate's current certificate",
            m.certificate_expiration.clone(),
        );
        registry.register(
            "certificate_renewal_timestamp_seconds",
            "When certop renews each ClusterCertificate",
            m.certificate_renewal.clone(),
        );
        registry.register(
            "certificate_ready",
            "1 when the ClusterCertificate is Ready, else 0",
            m.certificate_ready.clone(),
        );
        registry.register(
            "ca_expiration_timestamp_seconds",
            "notAfter of each CertificateAuthority's certificate",
            m.authority_expiration.clone(),
        );
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
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            m.reconcile_duration.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn certificate(
        &self,
        name: &str,
        ready: bool,
        not_after: Option<DateTime<Utc>>,
        renewal: Option<DateTime<Utc>>,
    ) {
        let labels = &CertificateLabels {
            name: name.to_string(),
        };
        self.certificate_ready
            .get_or_create(labels)
            .set(i64::from(ready));
        if let Some(t) = not_after {
            self.certificate_expiration
                .get_or_create(labels)
                .set(t.timestamp());
        }
        if let Some(t) = renewal {
            self.certificate_renewal
                .get_or_create(labels)
                .set(t.timestamp());
        }
    }

    pub fn forget_certificate(&self, name: &str) {
        let labels = CertificateLabels {
            name: name.to_string(),
        };
        for family in [
            &self.certificate_ready,
            &self.certificate_expiration,
            &self.certificate_renewal,
        ] {
            family.remove(&labels);
        }
    }

    pub fn authority(&self, name: &str, not_after: DateTime<Utc>) {
        self.authority_expiration
            .get_or_create(&AuthorityLabels {
                name: name.to_string(),
            })
            .set(not_after.timestamp());
    }

    pub fn forget_authority(&self, name: &str) {
        let labels = AuthorityLabels {
            name: name.to_string(),
        };
        for family in [
            &self.authority_expiration,
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

    pub fn crl(&self, ca: &str, crl: &super::crl::PublishedCrl) {
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
