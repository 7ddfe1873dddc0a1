//! What goes when a certificate moves or goes: the Secret left behind by a
//! changed `secretName`, and on deletion the current certificate revoked
//! (unless told not to) and the Secret removed if certop made it.

use super::*;

/// After `secretName` or `secretNamespace` changed, the old Secret (still
/// holding a valid key) goes once the new one exists, if it is ours.
pub(super) async fn remove_moved_secret(
    cert: &ClusterCertificate,
    ctx: &Context,
) -> Result<(), Error> {
    let wanted = format!("{}/{}", cert.spec.secret_namespace, cert.spec.secret_name);
    let Some(old) = cert.status.as_ref().and_then(|s| s.secret.clone()) else {
        return Ok(());
    };
    if old == wanted {
        return Ok(());
    }
    let Some((ns, name)) = old.split_once('/') else {
        return Ok(());
    };
    if !ctx.managed_namespaces.contains(ns) {
        info!(certificate = %cert.name_any(), secret = %old, "the Secret the spec no longer names is in a namespace certop no longer manages; left in place");
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let existing = api.get_opt(name).await?;
    if ownership(existing.as_ref(), &cert.name_any()) == Ownership::Ours {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                info!(certificate = %cert.name_any(), secret = %old, "removed the Secret the spec no longer names")
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Revokes the certificates of a ClusterCertificate being deleted
/// (cessationOfOperation) and re-signs the CA's CRL: the one its status
/// names, and the one its Secret (`secret`, when ours) holds if the status
/// does not name it yet. That one was handed out too: its record may still
/// be waiting to be written with others' (`ledger_store::record_deferred`),
/// or the status write that names it failed, so it is recorded here first.
pub(super) async fn revoke_current(
    cert: &ClusterCertificate,
    ctx: &Context,
    secret: Option<&Secret>,
) -> Result<(), Error> {
    let named = cert.status.as_ref().and_then(|s| s.serial_number.clone());
    let unnamed = secret
        .and_then(leaf_of)
        .filter(|leaf| named.as_deref() != Some(leaf.serial.to_string().as_str()));
    if named.is_none() && unnamed.is_none() {
        return Ok(());
    }
    let ca_name = &cert.spec.issuer_ref.name;
    let Some(ca) = ctx.cas.get(&ObjectRef::new(ca_name)) else {
        warn!(certificate = %cert.name_any(), ca = %ca_name, "CA gone; cannot revoke on delete");
        return Ok(());
    };
    let now = Utc::now();
    let ring = match authority_cache::keyring(ctx, &ca, now).await? {
        Keys::Ready(r) => r,
        Keys::Unusable(why) => {
            warn!(certificate = %cert.name_any(), message = %why, "cannot revoke on delete");
            return Ok(());
        }
    };
    let reason = RevocationReason::CessationOfOperation;
    let mut serials: Vec<String> = named.into_iter().collect();
    // A certificate this CA did not sign is not its to revoke.
    if let Some((leaf, key)) = unnamed.and_then(|leaf| ring.signer_of(&leaf).map(|k| (leaf, k))) {
        let serial = leaf.serial.to_string();
        let entry = LedgerEntry::of(&leaf, Some(&cert.name_any()), key);
        match ledger_store::record(ctx, ca_name, entry, &[], now).await {
            Ok(_) => serials.push(serial),
            // A shard certop will not write must not hold the delete back.
            Err(Error::Ledger(e)) => {
                warn!(certificate = %cert.name_any(), %serial, error = %e, "cannot record the certificate the Secret holds to revoke it on delete");
            }
            Err(e) => return Err(e),
        }
    }
    let rule = RevocationRule {
        issued_before: now + chrono::Duration::seconds(1),
        ..Default::default()
    }
    .with_serials(&serials);
    let revoked = ledger_store::revoke(ctx, ca_name, &rule, reason, now).await?;
    ctx.metrics
        .revoked(reason.as_str(), revoked.newly.len() as u64);
    crl::publish_all(ctx, &ca, &ring, now).await?;
    info!(certificate = %cert.name_any(), serials = ?serials, "revoked on delete");
    Ok(())
}

/// The ClusterCertificate goes: its certificates are revoked unless kept,
/// and its Secret goes unless the policy keeps it or it is not ours.
pub(super) async fn cleanup(cert: &ClusterCertificate, ctx: &Context) -> Result<Action, Error> {
    let name = cert.name_any();
    let retain =
        cert.spec.secret_deletion_policy.unwrap_or_default() == SecretDeletionPolicy::Retain;
    // A Secret kept by policy is still in use: revoking it would break its
    // holder, so only an explicit revokeOnDelete revokes it.
    let revoke = cert.spec.revoke_on_delete.unwrap_or(!retain);
    // certop reads Secrets only where it manages them.
    let managed = ctx.managed_namespaces.contains(&cert.spec.secret_namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cert.spec.secret_namespace);
    let secret = match managed && (revoke || !retain) {
        true => secrets
            .get_opt(&cert.spec.secret_name)
            .await?
            .filter(|s| ownership(Some(s), &name) == Ownership::Ours),
        false => None,
    };
    if revoke {
        revoke_current(cert, ctx, secret.as_ref()).await?;
    }
    if retain {
        info!(certificate = %name, "deleted; Secret retained by policy");
        return Ok(Action::await_change());
    }
    if !managed {
        info!(certificate = %name, namespace = %cert.spec.secret_namespace, "deleted; certop does not manage its Secret's namespace, so any Secret there is left in place");
        return Ok(Action::await_change());
    }
    if secret.is_some() {
        match secrets
            .delete(&cert.spec.secret_name, &DeleteParams::default())
            .await
        {
            Ok(_) => info!(certificate = %name, "deleted with its Secret"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}
