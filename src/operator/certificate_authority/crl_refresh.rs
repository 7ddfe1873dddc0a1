//! Keeping each CRL of a CA fresh: the stored one is verified, not
//! trusted, and signed again when it is missing, tampered with, older than
//! the status says, marked incomplete while the ledger is whole again, or
//! due (`refreshBefore` ahead of its nextUpdate), so it never goes stale
//! while the operator runs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::decide::CrlJob;
use crate::api::CertificateAuthority;
use crate::core::ledger::crl_refresh_time;
use crate::operator::{Context, Error, store::crl};

/// What keeping a CRL fresh came to.
#[derive(Debug)]
pub enum Refreshed {
    /// The CRL now published, and when to look at it again.
    Fresh {
        crl: Box<crl::PublishedCrl>,
        wait: Duration,
    },
    /// Its number cannot grow any more: the last one is still served.
    Exhausted(String),
}

/// Signs a CRL of the job's key when there is none or the current one is
/// due for refresh; otherwise keeps certop's copy current from the
/// verified published one.
pub async fn refresh(
    ca: &CertificateAuthority,
    ctx: &Context,
    job: &CrlJob,
    ledger_whole: bool,
    now: DateTime<Utc>,
) -> Result<Refreshed, Error> {
    match fresh(ca, ctx, job, ledger_whole, now).await {
        Ok((crl, wait)) => Ok(Refreshed::Fresh {
            crl: Box::new(crl),
            wait,
        }),
        Err(Error::CrlNumberExhausted(message)) => Ok(Refreshed::Exhausted(message)),
        Err(e) => Err(e),
    }
}

async fn fresh(
    ca: &CertificateAuthority,
    ctx: &Context,
    job: &CrlJob,
    ledger_whole: bool,
    now: DateTime<Utc>,
) -> Result<(crl::PublishedCrl, Duration), Error> {
    let (authority, index) = (job.authority.as_ref(), job.index);
    let (_, refresh_before) = crl::schedule(ca);
    // What is stored is verified, not trusted: a deleted, tampered or
    // older CRL ConfigMap is published again.
    let current = crl::verify_stored(ctx, ca, authority, index, job.floor).await?;
    let due = crl_refresh_time(
        current.as_ref().map(|c| c.next_update),
        current
            .as_ref()
            .is_some_and(|c| c.incomplete.is_some() && ledger_whole),
        refresh_before,
        now,
    );
    let crl = match current {
        Some(c) if due > now => {
            crl::keep_copy(ctx, ca, authority, index, &c).await?;
            ctx.crls
                .offer(&crl::crl_path(&ca.name_any(), index), c.clone());
            c
        }
        _ => crl::publish(ctx, ca, authority, index, now).await?,
    };
    let refresh_at = crl_refresh_time(Some(crl.next_update), false, refresh_before, now);
    let wait = (refresh_at - now)
        .to_std()
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_secs(1));
    Ok((crl, wait))
}
