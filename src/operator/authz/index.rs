//! Every replica's copy of the revoked credentials: the ledger shards of
//! every CA, followed by one watch, each shard's revoked entries replacing
//! what its previous version said. Until the first full listing has
//! arrived the index is not ready, and the webhook answers with an error
//! rather than "no opinion", so kube-apiserver applies its failure policy
//! instead of letting a revoked certificate through at startup.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use crate::api::meta;
use crate::core::authz::RevokedCredentials;
use crate::operator::runtime::shared_store::watch;
use crate::operator::store::ledger_store::entries_of;

/// The index and whether it reflects a complete listing of the shards.
#[derive(Default)]
pub struct RevokedIndex {
    pub credentials: RwLock<RevokedCredentials>,
    ready: AtomicBool,
}

impl RevokedIndex {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.credentials.read().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one watch event. A relisting builds a fresh index and swaps
    /// it in whole when done, so a shard deleted while the watch was down
    /// is forgotten, and the old index answers meanwhile.
    pub fn apply(&self, event: Event<ConfigMap>, relisting: &mut Option<RevokedCredentials>) {
        match event {
            Event::Init => *relisting = Some(RevokedCredentials::default()),
            Event::InitApply(cm) => {
                if let Some(building) = relisting.as_mut() {
                    read_shard(building, &cm);
                }
            }
            Event::InitDone => {
                if let (Some(built), Ok(mut current)) = (relisting.take(), self.credentials.write())
                {
                    *current = built;
                    self.ready.store(true, Ordering::Release);
                }
            }
            Event::Apply(cm) => {
                if let Ok(mut current) = self.credentials.write() {
                    read_shard(&mut current, &cm);
                }
            }
            Event::Delete(cm) => {
                if let Ok(mut current) = self.credentials.write() {
                    current.remove_shard(&cm.name_any());
                }
            }
        }
    }
}

/// What one shard says; a shard certop cannot parse keeps what it said
/// before (the ledger's own writers refuse to touch it, and say so).
fn read_shard(index: &mut RevokedCredentials, cm: &ConfigMap) {
    let ca = cm
        .annotations()
        .get(meta::CERTIFICATE_AUTHORITY)
        .cloned()
        .unwrap_or_default();
    match entries_of(cm) {
        Ok(entries) => index.replace_shard(&cm.name_any(), &ca, &entries),
        Err(e) => {
            warn!(error = %e, "revoked credentials: a ledger shard kept its last readable state")
        }
    }
}

/// Follows the ledger shards in the operator's namespace for as long as
/// the process runs.
pub async fn follow(client: Client, namespace: String, index: Arc<RevokedIndex>) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let stream = watch(api, watcher::Config::default().labels(meta::LEDGER));
    futures::pin_mut!(stream);
    let mut relisting = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => index.apply(event, &mut relisting),
            Err(e) => warn!(error = %e, "revoked credentials: the ledger watch failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RevocationReason;
    use crate::core::authz::{Verdict, X509_PREFIX, review};
    use crate::core::ledger::{LedgerEntry, Revocation};
    use crate::operator::store::ledger_store::shard_config_map;

    fn entry(serial: &str, digest: &str, revoked: bool) -> LedgerEntry {
        LedgerEntry {
            serial: serial.into(),
            issued_at: 0,
            not_after: 4_000_000_000,
            organizations: vec![],
            dns_names: vec![],
            ip_addresses: vec![],
            certificate: None,
            revoked: revoked.then_some(Revocation {
                at: 1_800_000_000,
                reason: RevocationReason::KeyCompromise,
            }),
            key: 0,
            fingerprint: Some(digest.into()),
        }
    }

    fn denied(index: &RevokedIndex, digest: &str) -> bool {
        let ids = vec![format!("{X509_PREFIX}{digest}")];
        let credentials = index.credentials.read().expect("lock");
        review(&ids, &credentials) != Verdict::NoOpinion
    }

    #[test]
    fn the_index_follows_revocation_expiry_reload_and_relisting_exactly() {
        let index = RevokedIndex::default();
        let mut relisting = None;
        let shard = |n: usize, entries: &[LedgerEntry]| shard_config_map("ca", n, "ns", entries);
        index.apply(Event::Init, &mut relisting);
        index.apply(
            Event::InitApply(shard(1, &[entry("0a", "aa", true)])),
            &mut relisting,
        );
        assert!(
            !index.is_ready(),
            "not ready before the listing is complete"
        );
        assert!(!denied(&index, "aa"));
        index.apply(Event::InitDone, &mut relisting);
        assert!(index.is_ready());
        assert!(denied(&index, "aa"));

        // A revocation recorded in another shard.
        index.apply(
            Event::Apply(shard(
                2,
                &[entry("0b", "bb", true), entry("0c", "cc", false)],
            )),
            &mut relisting,
        );
        assert!(denied(&index, "bb") && !denied(&index, "cc"));
        assert_eq!(index.len(), 2);

        // The expired entry of 0a pruned from its shard.
        index.apply(Event::Apply(shard(1, &[])), &mut relisting);
        assert!(!denied(&index, "aa"));

        // An unreadable shard keeps what it said.
        let mut broken = shard(2, &[]);
        broken.data = Some(Default::default());
        index.apply(Event::Apply(broken), &mut relisting);
        assert!(denied(&index, "bb"));

        // After a failover or a watch restart, a relisting that no longer
        // has shard 2 (deleted meanwhile) forgets it; the old index answers
        // until the listing is complete.
        index.apply(Event::Init, &mut relisting);
        index.apply(
            Event::InitApply(shard(3, &[entry("0d", "dd", true)])),
            &mut relisting,
        );
        assert!(denied(&index, "bb") && !denied(&index, "dd"));
        index.apply(Event::InitDone, &mut relisting);
        assert!(!denied(&index, "bb") && denied(&index, "dd"));
        assert_eq!(index.len(), 1);

        index.apply(Event::Delete(shard(3, &[])), &mut relisting);
        assert!(index.is_empty());
    }
}
