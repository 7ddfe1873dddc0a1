//! The Events a rotation step is announced with, worded from what the
//! pass observed. Pure.

use std::sync::Arc;

use super::{Announcement, Observed};
use crate::api::{CaRotationStatus, meta};
use crate::core::rotation::{StartReason, Step};
use crate::operator::reason::Reason;
use crate::pki::Authority;

/// The Event of a step recorded.
pub fn step_event(
    o: &Observed,
    step: &Step,
    next: Option<&Arc<Authority>>,
    live: usize,
    rotation_status: &CaRotationStatus,
) -> Option<Announcement> {
    let said = |reason, warning, message| {
        Some(Announcement {
            reason,
            warning,
            action: "Rotate",
            message,
        })
    };
    match step {
        Step::Start { number, why, .. } => {
            let why = match why {
                StartReason::Requested => "as requested",
                StartReason::Due => "as its certificate nears its end",
            };
            said(
                Reason::RotationStarted,
                false,
                format!(
                    "Rotation {number} started {why}: a new key is made and trusted beside the current one"
                ),
            )
        }
        Step::BindNext { .. } => next.and_then(|next| {
            said(
                Reason::RotationStaged,
                false,
                format!(
                    "New CA certificate serial {} is trusted beside the current one in every trust bundle and ca.crt; it signs an overlap ({}s) after certop has published it in every trust bundle",
                    next.certificate().serial,
                    o.spec.settings.rotation_overlap.num_seconds()
                ),
            )
        }),
        Step::Switch => next.and_then(|next| {
            let old = o.signing.certificate();
            said(
                Reason::RotationSwitched,
                false,
                format!(
                    "CA certificate serial {} signs from now on; the certificates of serial {} are re-issued by it, and serial {} stays trusted until none of them is left",
                    next.certificate().serial,
                    old.serial,
                    old.serial
                ),
            )
        }),
        Step::Retire { early } => {
            let serial = rotation_status
                .previous_serial_number
                .as_deref()
                .unwrap_or("unknown");
            let message = match early {
                true => format!(
                    "The retirement of the old CA (serial {serial}) was ended by {}: it leaves the trust bundles with {live} of its certificates still unexpired (they no longer verify), and its key and CRL are deleted",
                    meta::END_RETIREMENT
                ),
                false => format!(
                    "No certificate of the old CA (serial {serial}) is left: it leaves the trust bundles, and its key and CRL are deleted"
                ),
            };
            said(Reason::RotationFinished, *early, message)
        }
        _ => None,
    }
}
