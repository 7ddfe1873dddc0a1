//! The authorization webhook that makes revocation enforced: kube-apiserver
//! asks it first, for requests authenticated by a client certificate (its
//! AuthorizationConfiguration's `matchConditions`, written by `certop
//! authz-config`), and it refuses those whose certificate certop revoked.
//! It never allows anything: for every other request it has no opinion,
//! and Node and RBAC authorization decide as before. Every replica serves
//! it, leader or not, from its own copy of the revoked credentials.

pub mod index;
pub mod report;
#[cfg(test)]
mod report_scenarios;
pub mod serving;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use chrono::Utc;
use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewStatus};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::api::CertificateAuthority;
use crate::core::authz::{CREDENTIAL_ID_KEY, Verdict, review};
use crate::operator::Error;
use crate::operator::runtime::metrics::Metrics;
use crate::operator::store::authority_cache::marks_of;
pub use index::RevokedIndex;
use report::Observations;
use serving::Serving;

/// How often a replica looks whether its serving certificate is due.
const RENEWAL_CHECK: Duration = Duration::from_secs(60);
/// How often a replica without a serving certificate tries again.
const FIRST_CERTIFICATE_RETRY: Duration = Duration::from_secs(5);

/// Where the webhook listens and what its serving certificate says.
#[derive(Clone, Debug)]
pub struct AuthzSettings {
    pub addr: SocketAddr,
    /// The CertificateAuthority that signs the serving certificate.
    pub ca: String,
    /// The DNS names and IPs kube-apiserver dials the webhook by.
    pub names: Vec<String>,
}

/// What the handler reads.
struct AuthzState {
    index: Arc<RevokedIndex>,
    metrics: Arc<Metrics>,
    observations: Arc<Observations>,
}

/// Binds the webhook's address, so a port in use fails the start.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    let http_error = |source| Error::Http {
        addr: addr.to_string(),
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(http_error)?;
    listener.set_nonblocking(true).map_err(http_error)?;
    Ok(listener)
}

/// Serves the webhook on `listener` until `stop` resolves: follows the
/// ledger, obtains a serving certificate, then answers SubjectAccessReviews
/// while keeping the certificate renewed.
pub async fn serve(
    client: Client,
    namespace: String,
    settings: AuthzSettings,
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let index = Arc::new(RevokedIndex::default());
    tokio::spawn(index::follow(
        client.clone(),
        namespace.clone(),
        index.clone(),
        metrics.clone(),
    ));
    let observations = Arc::new(Observations::default());
    tokio::spawn(report::run(
        client.clone(),
        index.clone(),
        observations.clone(),
    ));
    let first = loop {
        match serving::signing_key(&client, &namespace, &settings.ca, Utc::now())
            .await
            .and_then(|ca| serving::serving(&ca, &settings.names, Utc::now()))
        {
            Ok(s) => break s,
            Err(e) => {
                warn!(error = %e, "authorization webhook: no serving certificate yet");
                tokio::time::sleep(FIRST_CERTIFICATE_RETRY).await;
            }
        }
    };
    let tls = RustlsConfig::from_config(first.config.clone());
    tokio::spawn(keep_renewed(
        client,
        namespace,
        settings.clone(),
        first,
        tls.clone(),
    ));
    let app = router(index, metrics, observations);
    let handle = axum_server::Handle::new();
    let on_stop = handle.clone();
    tokio::spawn(async move {
        stop.await;
        on_stop.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    info!(addr = %settings.addr, ca = %settings.ca, "authorization webhook serving");
    let http_error = |source| Error::Http {
        addr: settings.addr.to_string(),
        source,
    };
    axum_server::from_tcp_rustls(listener, tls)
        .map_err(http_error)?
        .handle(handle)
        .serve(app.into_make_service())
        .await
        .map_err(http_error)
}

/// The webhook's routes: `POST /` and `POST /authorize` take a
/// SubjectAccessReview. Public for the benchmark, which serves it beside a
/// handler that answers a constant.
pub fn router(
    index: Arc<RevokedIndex>,
    metrics: Arc<Metrics>,
    observations: Arc<Observations>,
) -> Router {
    let state = Arc::new(AuthzState {
        index,
        metrics,
        observations,
    });
    Router::new()
        .route("/", post(authorize))
        .route("/authorize", post(authorize))
        .with_state(state)
}

/// Replaces the serving certificate at half its life, or at once when the
/// CA signs with another key.
async fn keep_renewed(
    client: Client,
    namespace: String,
    settings: AuthzSettings,
    mut current: Serving,
    tls: RustlsConfig,
) {
    let cas = Api::<CertificateAuthority>::all(client.clone());
    loop {
        tokio::time::sleep(RENEWAL_CHECK).await;
        let now = Utc::now();
        let signing = match cas.get_opt(&settings.ca).await {
            Ok(Some(ca)) => marks_of(&ca).ok().and_then(|m| m.signing_fingerprint),
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "authorization webhook: cannot read its CA");
                None
            }
        };
        if !current.due(signing.as_deref(), now) {
            continue;
        }
        match serving::signing_key(&client, &namespace, &settings.ca, now)
            .await
            .and_then(|ca| serving::serving(&ca, &settings.names, now))
        {
            Ok(next) => {
                tls.reload_from_config(next.config.clone());
                info!(not_after = %next.not_after, "authorization webhook: serving certificate renewed");
                current = next;
            }
            Err(e) => {
                warn!(error = %e, not_after = %current.not_after, "authorization webhook: cannot renew the serving certificate")
            }
        }
    }
}

/// `POST /authorize`: one SubjectAccessReview (authorization.k8s.io/v1).
async fn authorize(State(state): State<Arc<AuthzState>>, body: Bytes) -> Response {
    if !state.index.is_ready() {
        state.metrics.authz_review("not_ready");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "certop: the revoked-credential index is still loading",
        )
            .into_response();
    }
    let mut sar: SubjectAccessReview = match serde_json::from_slice(&body) {
        Ok(sar) => sar,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("certop: not a SubjectAccessReview: {e}"),
            )
                .into_response();
        }
    };
    let ids = sar
        .spec
        .extra
        .as_ref()
        .and_then(|extra| extra.get(CREDENTIAL_ID_KEY))
        .cloned()
        .unwrap_or_default();
    let verdict = match state.index.credentials.read() {
        Ok(credentials) => review(&ids, &credentials),
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "certop: the revoked-credential index is unusable",
            )
                .into_response();
        }
    };
    let now = Utc::now();
    state.observations.reviewed(now);
    sar.status = Some(match verdict {
        Verdict::NoOpinion => {
            state.metrics.authz_review("no_opinion");
            SubjectAccessReviewStatus::default()
        }
        Verdict::Denied { reason, digest } => {
            state.metrics.authz_review("denied");
            state.observations.denied(digest, now);
            info!(user = ?sar.spec.user, %reason, "authorization webhook: refused a revoked certificate");
            SubjectAccessReviewStatus {
                allowed: false,
                denied: Some(true),
                reason: Some(reason),
                ..Default::default()
            }
        }
    });
    match serde_json::to_vec(&sar) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("certop: cannot encode the review: {e}"),
        )
            .into_response(),
    }
}
