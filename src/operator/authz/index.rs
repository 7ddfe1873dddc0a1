//! Every replica's copy of the revoked credentials, followed by two
//! watches: the ledger shards of every CA (what certop issued and revoked)
//! and the CertificateRevocations (digests of certificates certop did not
//! issue). Until both first listings are complete the index is not ready,
//! and the webhook answers with an error rather than "no opinion", so
//! kube-apiserver applies its failure policy instead of letting a revoked
//! certificate through at startup.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{error, warn};

use crate::api::{CertificateRevocation, meta};
use crate::core::authz::{RevokedCredentials, SourceKind};
use crate::operator::runtime::metrics::Metrics;
use crate::operator::runtime::shared_store::watch;
use crate::operator::store::ledger_store::entries_of;

/// The index and whether each of its sources has been listed whole.
#[derive(Default)]
pub struct RevokedIndex {
    pub credentials: RwLock<RevokedCredentials>,
    shards_listed: AtomicBool,
    revocations_listed: AtomicBool,
}

/// One kind of object the index follows.
trait Source: Resource + Clone {
    const KIND: SourceKind;
    fn read(&self, index: &mut RevokedCredentials);
    fn forget(&self, index: &mut RevokedCredentials);
}

impl Source for ConfigMap {
    const KIND: SourceKind = SourceKind::Shard;

    /// What one shard says. A shard certop cannot parse keeps what it said
    /// before, if this replica read it before, and is counted
    /// (`certop_authz_unreadable_shards`): the ledger's own writers refuse
    /// to touch it and the CA says so.
    fn read(&self, index: &mut RevokedCredentials) {
        let ca = self
            .annotations()
            .get(meta::CERTIFICATE_AUTHORITY)
            .cloned()
            .unwrap_or_default();
        match entries_of(self) {
            Ok(entries) => index.replace_shard(&self.name_any(), &ca, &entries),
            Err(e) => {
                index.mark_unreadable(&self.name_any());
                error!(error = %e, "revoked credentials: certificates this ledger shard records as revoked are refused only as this replica last read it (not at all after a restart) until it can be read");
            }
        }
    }

    fn forget(&self, index: &mut RevokedCredentials) {
        index.remove_shard(&self.name_any());
    }
}

impl Source for CertificateRevocation {
    const KIND: SourceKind = SourceKind::Revocation;

    fn read(&self, index: &mut RevokedCredentials) {
        index.replace_revocation(self);
    }

    fn forget(&self, index: &mut RevokedCredentials) {
        index.remove_revocation(&self.name_any());
    }
}

impl RevokedIndex {
    /// An index of these credentials, ready as if both listings were
    /// complete: for benchmarks and tests that serve the webhook without a
    /// cluster.
    pub fn listed(credentials: RevokedCredentials) -> Self {
        RevokedIndex {
            credentials: RwLock::new(credentials),
            shards_listed: AtomicBool::new(true),
            revocations_listed: AtomicBool::new(true),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.shards_listed.load(Ordering::Acquire)
            && self.revocations_listed.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.credentials.read().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn listing_done(&self, kind: SourceKind) -> &AtomicBool {
        match kind {
            SourceKind::Shard => &self.shards_listed,
            SourceKind::Revocation => &self.revocations_listed,
        }
    }

    /// Applies one watch event. Objects of a relisting (after a failover or
    /// a watch restart) replace what they said as they arrive; when it is
    /// complete, those it no longer had (deleted meanwhile) are forgotten.
    fn apply<K: Source>(&self, event: Event<K>, relisting: &mut Option<HashSet<String>>) {
        let Ok(mut index) = self.credentials.write() else {
            return;
        };
        match event {
            Event::Init => *relisting = Some(HashSet::new()),
            Event::InitApply(object) => {
                if let Some(seen) = relisting.as_mut() {
                    seen.insert(object.name_any());
                }
                object.read(&mut index);
            }
            Event::InitDone => {
                if let Some(seen) = relisting.take() {
                    index.keep_only(K::KIND, &seen);
                }
                self.listing_done(K::KIND).store(true, Ordering::Release);
            }
            Event::Apply(object) => object.read(&mut index),
            Event::Delete(object) => object.forget(&mut index),
        }
    }
}

/// Follows the ledger shards in the operator's namespace and every
/// CertificateRevocation for as long as the process runs.
pub async fn follow(
    client: Client,
    namespace: String,
    index: Arc<RevokedIndex>,
    metrics: Arc<Metrics>,
) {
    let shards: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let revocations: Api<CertificateRevocation> = Api::all(client);
    tokio::join!(
        follow_one(
            shards,
            watcher::Config::default().labels(meta::LEDGER),
            index.clone(),
            metrics.clone()
        ),
        follow_one(revocations, watcher::Config::default(), index, metrics),
    );
}

async fn follow_one<K>(
    api: Api<K>,
    config: watcher::Config,
    index: Arc<RevokedIndex>,
    metrics: Arc<Metrics>,
) where
    K: Source + crate::operator::runtime::shared_store::Cached,
{
    let stream = watch(api, config);
    futures::pin_mut!(stream);
    let mut relisting = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                index.apply(event, &mut relisting);
                let unreadable = index
                    .credentials
                    .read()
                    .map_or(0, |c| c.unreadable_shards());
                metrics.authz_index(index.len(), index.is_ready(), unreadable);
            }
            Err(e) => warn!(error = %e, "revoked credentials: a watch failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CertificateRevocationSpec, IssuerRef};
    use crate::core::authz::{Verdict, X509_PREFIX, review};
    use crate::core::ledger::LedgerEntry;
    use crate::operator::store::ledger_store::shard_config_map;

    fn entry(serial: &str, digest: &str, revoked: bool) -> LedgerEntry {
        crate::core::authz::tests::entry(serial, Some(digest), revoked)
    }

    fn denied(index: &RevokedIndex, digest: &str) -> bool {
        let ids = vec![format!("{X509_PREFIX}{digest}")];
        let credentials = index.credentials.read().expect("lock");
        review(&ids, &credentials) != Verdict::NoOpinion
    }

    fn shard(n: usize, entries: &[LedgerEntry]) -> ConfigMap {
        shard_config_map("ca", n, "ns", entries)
    }

    fn revocation(name: &str, digest: &str) -> CertificateRevocation {
        CertificateRevocation::new(
            name,
            CertificateRevocationSpec {
                issuer_ref: IssuerRef { name: "ca".into() },
                serial_numbers: vec!["0e".into()],
                certificate_sha256s: vec![digest.into()],
                ..Default::default()
            },
        )
    }

    #[test]
    fn the_index_follows_revocation_expiry_reload_and_relisting_exactly() {
        let index = RevokedIndex::default();
        let (mut shards, mut revocations) = (None, None);
        index.apply(Event::Init::<ConfigMap>, &mut shards);
        index.apply(
            Event::InitApply(shard(1, &[entry("0a", "aa", true)])),
            &mut shards,
        );
        index.apply(Event::InitDone::<ConfigMap>, &mut shards);
        assert!(
            !index.is_ready(),
            "not ready before both listings are complete"
        );
        index.apply(Event::Init::<CertificateRevocation>, &mut revocations);
        index.apply(
            Event::InitApply(revocation("offline", "ee")),
            &mut revocations,
        );
        index.apply(Event::InitDone::<CertificateRevocation>, &mut revocations);
        assert!(index.is_ready());
        assert!(denied(&index, "aa") && denied(&index, "ee"));

        // A revocation recorded in another shard.
        index.apply(
            Event::Apply(shard(
                2,
                &[entry("0b", "bb", true), entry("0c", "cc", false)],
            )),
            &mut shards,
        );
        assert!(denied(&index, "bb") && !denied(&index, "cc"));
        assert_eq!(index.len(), 3);

        // The expired entry of 0a pruned from its shard.
        index.apply(Event::Apply(shard(1, &[])), &mut shards);
        assert!(!denied(&index, "aa"));

        // An unreadable shard keeps what it said, and is counted.
        let mut broken = shard(2, &[]);
        broken.data = Some(Default::default());
        index.apply(Event::Apply(broken), &mut shards);
        assert!(denied(&index, "bb"));
        let unreadable =
            |index: &RevokedIndex| index.credentials.read().expect("lock").unreadable_shards();
        assert_eq!(unreadable(&index), 1);

        // After a failover or a watch restart, a relisting of the shards
        // that no longer has shard 2 (deleted meanwhile) forgets it, and
        // leaves the revocations' digests alone.
        index.apply(Event::Init::<ConfigMap>, &mut shards);
        index.apply(
            Event::InitApply(shard(3, &[entry("0d", "dd", true)])),
            &mut shards,
        );
        assert!(
            denied(&index, "bb"),
            "the old state answers until the listing is complete"
        );
        index.apply(Event::InitDone::<ConfigMap>, &mut shards);
        assert!(!denied(&index, "bb") && denied(&index, "dd") && denied(&index, "ee"));
        assert_eq!(unreadable(&index), 0, "the unreadable shard is gone");
        assert_eq!(index.len(), 2);

        index.apply(Event::Delete(shard(3, &[])), &mut shards);
        index.apply(Event::Delete(revocation("offline", "ee")), &mut revocations);
        assert!(index.is_empty());
    }

    #[test]
    fn a_digest_filled_into_an_already_revoked_entry_is_refused_from_then_on() {
        let index = RevokedIndex::default();
        let (mut shards, mut revocations) = (None, None);
        let mut legacy = entry("0f", "ff", true);
        legacy.fingerprint = None;
        index.apply(Event::Init::<ConfigMap>, &mut shards);
        index.apply(Event::InitApply(shard(4, &[legacy.clone()])), &mut shards);
        index.apply(Event::InitDone::<ConfigMap>, &mut shards);
        index.apply(Event::Init::<CertificateRevocation>, &mut revocations);
        index.apply(Event::InitDone::<CertificateRevocation>, &mut revocations);
        assert!(!denied(&index, "ff"), "nothing to match it by yet");
        legacy.fingerprint = Some("ff".into());
        index.apply(Event::Apply(shard(4, &[legacy])), &mut shards);
        assert!(denied(&index, "ff"), "the filled digest is refused");
    }
}
