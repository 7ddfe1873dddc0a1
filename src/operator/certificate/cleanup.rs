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

/// Revokes the current certificate of a ClusterCertificate being deleted
/// (cessationOfOperation) and re-signs the CA's CRL.
pub(super) async fn revoke_current(cert: &ClusterCertificate, ctx: &Context) -> Result<(), Error> {
    let Some(serial) = cert.status.as_ref().and_then(|s| s.serial_number.clone()) else {
        return Ok(());
    };
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
    let rule = RevocationRule {
        issued_before: now + chrono::Duration::seconds(1),
        ..Default::default()
    }
    .with_serials([&serial]);
    let reason = RevocationReason::CessationOfOperation;
    let revoked = ledger_store::revoke(ctx, ca_name, &rule, reason, now).await?;
    ctx.metrics
        .revoked(reason.as_str(), revoked.newly.len() as u64);
    crl::publish_all(ctx, &ca, &ring, now).await?;
    info!(certificate = %cert.name_any(), %serial, "revoked on delete");
    Ok(())
}

/// The ClusterCertificate goes: its certificate is revoked unless kept, and
/// its Secret goes unless the policy keeps it or it is not ours.
pub(super) async fn cleanup(cert: &ClusterCertificate, ctx: &Context) -> Result<Action, Error> {
    let name = cert.name_any();
    let retain =
        cert.spec.secret_deletion_policy.unwrap_or_default() == SecretDeletionPolicy::Retain;
    // A Secret kept by policy is still in use: revoking it would break its
    // holder, so only an explicit revokeOnDelete revokes it.
    if cert.spec.revoke_on_delete.unwrap_or(!retain) {
        revoke_current(cert, ctx).await?;
    }
    if retain {
        info!(certificate = %name, "deleted; Secret retained by policy");
        return Ok(Action::await_change());
    }
    if !ctx.managed_namespaces.contains(&cert.spec.secret_namespace) {
        info!(certificate = %name, namespace = %cert.spec.secret_namespace, "deleted; certop does not manage its Secret's namespace, so any Secret there is left in place");
        return Ok(Action::await_change());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cert.spec.secret_namespace);
    let secret = secrets.get_opt(&cert.spec.secret_name).await?;
    if ownership(secret.as_ref(), &name) == Ownership::Ours {
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
