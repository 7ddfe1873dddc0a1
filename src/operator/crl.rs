//! Publishing CRLs: signed by the leader, stored in a ConfigMap in the
//! operator's namespace (DER in binaryData, PEM in data), and served over
//! HTTP by every replica from what the ConfigMap holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use tracing::info;

use super::ledger_store::{self, ca_key};
use super::{Context, Error};
use crate::api::{CertificateAuthority, meta, to_chrono};
use crate::ledger;
use crate::pki::{Authority, CrlRequest, build_crl};

pub const DER_KEY: &str = "crl.der";
pub const PEM_KEY: &str = "crl.pem";
const NUMBER_ANNOTATION: &str = "certop.dev/crl-number";
const THIS_UPDATE_ANNOTATION: &str = "certop.dev/crl-this-update";
const NEXT_UPDATE_ANNOTATION: &str = "certop.dev/crl-next-update";
const ENTRIES_ANNOTATION: &str = "certop.dev/crl-entries";
/// The API server refuses objects over 1 MiB; leave room for metadata.
const MAX_STORED_BYTES: usize = 900 * 1024;

pub const DEFAULT_VALIDITY_HOURS: i64 = 24;

/// A CRL as replicas serve it.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishedCrl {
    pub der: Vec<u8>,
    pub pem: String,
    pub number: u64,
    pub this_update: DateTime<Utc>,
    pub next_update: DateTime<Utc>,
    pub entries: usize,
    /// False when the CRL outgrew one object and only the leader serves it.
    pub stored: bool,
}

/// The CRLs this replica serves, by CA name.
#[derive(Default)]
pub struct CrlCache {
    crls: RwLock<HashMap<String, PublishedCrl>>,
}

impl CrlCache {
    pub fn get(&self, ca: &str) -> Option<PublishedCrl> {
        self.crls.read().ok()?.get(ca).cloned()
    }

    /// Keeps the newer of what is cached and `crl` (by CRL number).
    pub fn offer(&self, ca: &str, crl: PublishedCrl) {
        if let Ok(mut crls) = self.crls.write() {
            let newer = crls.get(ca).is_none_or(|c| c.number <= crl.number);
            if newer {
                crls.insert(ca.to_string(), crl);
            }
        }
    }

    pub fn forget(&self, ca: &str) {
        if let Ok(mut crls) = self.crls.write() {
            crls.remove(ca);
        }
    }
}

pub fn config_map_name(ca: &str) -> String {
    format!("certop-crl-{}", ca_key(ca))
}

/// Reads a CRL ConfigMap as replicas serve it.
pub fn from_config_map(cm: &ConfigMap) -> Option<(String, PublishedCrl)> {
    let ca = cm.annotations().get(meta::CERTIFICATE_AUTHORITY)?.clone();
    let a = cm.annotations();
    let der = cm.binary_data.as_ref()?.get(DER_KEY)?.0.clone();
    let pem = cm
        .data
        .as_ref()
        .and_then(|d| d.get(PEM_KEY))
        .cloned()
        .unwrap_or_default();
    let time = |k: &str| {
        a.get(k)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc())
    };
    Some((
        ca,
        PublishedCrl {
            der,
            pem,
            number: a.get(NUMBER_ANNOTATION)?.parse().ok()?,
            this_update: time(THIS_UPDATE_ANNOTATION)?,
            next_update: time(NEXT_UPDATE_ANNOTATION)?,
            entries: a
                .get(ENTRIES_ANNOTATION)
                .and_then(|n| n.parse().ok())
                .unwrap_or_default(),
            stored: true,
        },
    ))
}

/// (validity, how long before nextUpdate to re-sign), from the CA's spec.
pub fn schedule(ca: &CertificateAuthority) -> (chrono::Duration, chrono::Duration) {
    let crl = ca.spec.crl.as_ref();
    let validity = crl
        .and_then(|c| c.validity)
        .map(to_chrono)
        .unwrap_or_else(|| chrono::Duration::hours(DEFAULT_VALIDITY_HOURS));
    let refresh = crl
        .and_then(|c| c.refresh_before)
        .map(to_chrono)
        .unwrap_or(validity / 3);
    (validity, refresh)
}

/// Signs a new CRL from the ledger and publishes it. The CRL number is one
/// more than the highest ever published for this CA (what the ConfigMap and
/// the CA's status say), so it only ever increases, across restarts and
/// leader changes; the ConfigMap is replaced at the version read, so two
/// writers cannot publish the same number.
pub async fn publish(
    ctx: &Context,
    ca: &CertificateAuthority,
    authority: &Authority,
    now: DateTime<Utc>,
) -> Result<PublishedCrl, Error> {
    let name = ca.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let cm_name = config_map_name(&name);
    let (validity, _) = schedule(ca);
    let entries = ledger_store::load(ctx, &name).await?;
    let revoked = ledger::revoked_entries(&entries);
    loop {
        let existing = api.get_opt(&cm_name).await?;
        let stored_number = existing.as_ref().and_then(|c| {
            c.annotations()
                .get(NUMBER_ANNOTATION)
                .and_then(|n| n.parse::<u64>().ok())
        });
        let status_number = ca
            .status
            .as_ref()
            .and_then(|s| s.crl_number)
            .and_then(|n| u64::try_from(n).ok());
        let cached_number = ctx.crls.get(&name).map(|c| c.number);
        let number = stored_number
            .max(status_number)
            .max(cached_number)
            .unwrap_or(0)
            + 1;
        let this_update = crate::pki::whole_seconds(now);
        let next_update = this_update + validity;
        let signed = build_crl(
            authority,
            &CrlRequest {
                number,
                this_update,
                next_update,
                entries: &revoked,
            },
        )
        .map_err(|source| Error::Pki {
            what: format!("signing the CRL of CertificateAuthority {name}"),
            source,
        })?;
        let fits = signed.der.len() + signed.pem.len() < MAX_STORED_BYTES;
        let published = PublishedCrl {
            der: signed.der.clone(),
            pem: signed.pem.clone(),
            number,
            this_update,
            next_update,
            entries: signed.entry_count,
            stored: fits,
        };
        let mut annotations = BTreeMap::from([
            (meta::CERTIFICATE_AUTHORITY.to_string(), name.clone()),
            (NUMBER_ANNOTATION.to_string(), number.to_string()),
            (THIS_UPDATE_ANNOTATION.to_string(), this_update.to_rfc3339()),
            (NEXT_UPDATE_ANNOTATION.to_string(), next_update.to_rfc3339()),
            (
                ENTRIES_ANNOTATION.to_string(),
                signed.entry_count.to_string(),
            ),
        ]);
        if !fits {
            annotations.insert(
                "certop.dev/crl-too-large".into(),
                signed.der.len().to_string(),
            );
        }
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(cm_name.clone()),
                namespace: Some(ctx.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (meta::MANAGED_BY.into(), meta::MANAGED_BY_VALUE.into()),
                    (meta::CRL.into(), ca_key(&name)),
                ])),
                annotations: Some(annotations),
                resource_version: existing.as_ref().and_then(|c| c.resource_version()),
                ..Default::default()
            },
            // Too large for one object: keep the number (so it never goes
            // back) and let the leader serve the CRL from memory.
            binary_data: fits.then(|| BTreeMap::from([(DER_KEY.into(), ByteString(signed.der))])),
            data: fits.then(|| BTreeMap::from([(PEM_KEY.into(), signed.pem)])),
            ..Default::default()
        };
        let written = match &existing {
            None => api.create(&PostParams::default(), &cm).await,
            Some(_) => api.replace(&cm_name, &PostParams::default(), &cm).await,
        };
        match written {
            Ok(_) => {
                info!(ca = %name, number, entries = published.entries, "published CRL");
                ctx.crls.offer(&name, published.clone());
                ctx.metrics.crl(&name, &published);
                return Ok(published);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
