use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::operator::Error;
use crate::operator::runtime::metrics::Metrics;
use crate::operator::store::crl::served::CrlCache;

/// What the HTTP endpoints read.
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub crls: Arc<CrlCache>,
    /// Set once the process can talk to the API server; every replica,
    /// leader or not, is ready then.
    pub ready: AtomicBool,
}

/// Binds the HTTP address, so a port in use fails the start, not the exit.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Http {
            addr: addr.to_string(),
            source,
        })
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/crl/{file}", get(crl))
        .route("/crl/{ca}/{file}", get(rotated_key_crl))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Http { addr, source })
}

async fn metrics(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn readyz(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// `GET /crl/<ca>/<key>.crl`: the CRL of a key a rotation made.
async fn rotated_key_crl(
    state: State<Arc<HttpState>>,
    Path((ca, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> axum::response::Response {
    serve_crl(state, format!("{ca}/{file}"), headers)
}

/// `GET /crl/<ca>.crl` (DER, `application/pkix-crl`) and `/crl/<ca>.pem`,
/// with an ETag (the CRL number) and Last-Modified (thisUpdate); a client
/// that already has this CRL gets 304.
async fn crl(
    state: State<Arc<HttpState>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> axum::response::Response {
    serve_crl(state, file, headers)
}

fn serve_crl(
    State(state): State<Arc<HttpState>>,
    file: String,
    headers: HeaderMap,
) -> axum::response::Response {
    let (ca, pem) = match (file.strip_suffix(".crl"), file.strip_suffix(".pem")) {
        (Some(ca), _) => (ca, false),
        (_, Some(ca)) => (ca, true),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                "ask for /crl/<ca>.crl or /crl/<ca>.pem",
            )
                .into_response();
        }
    };
    let Some(crl) = state.crls.get(ca) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no CRL for CertificateAuthority {ca}"),
        )
            .into_response();
    };
    let etag = format!("\"{}\"", crl.number);
    let last_modified = crl
        .this_update
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str());
    if cached {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let (content_type, body) = if pem {
        ("application/x-pem-file", crl.pem.into_bytes())
    } else {
        ("application/pkix-crl", crl.der)
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::ETAG, etag),
            (header::LAST_MODIFIED, last_modified),
        ],
        body,
    )
        .into_response()
}
