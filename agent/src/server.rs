//! The HTTP endpoint: `/metrics` (Prometheus text format) and `/healthz`.
//!
//! Hardened against misbehaving clients: at most [`MAX_CONNECTIONS`]
//! connections served at once (more wait up to [`CONNECTION_WAIT`] for a
//! slot, then are closed), request headers must arrive
//! within [`HEADER_TIMEOUT`], a connection lives at most
//! [`CONNECTION_TIMEOUT`], and at most [`MAX_RENDERS`] scrapes render at
//! once (the rest wait up to [`RENDER_WAIT`], then get 503).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::metrics::Metrics;

pub const MAX_CONNECTIONS: usize = 512;
pub const CONNECTION_WAIT: Duration = Duration::from_secs(5);
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_RENDERS: usize = 8;
pub const RENDER_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    renders: Arc<Semaphore>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: the port is already in use (pick another with --listen)")]
    InUse { addr: SocketAddr },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds early so a busy port fails before anything is attached.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => ServerError::InUse { addr },
            _ => ServerError::Bind { addr, source },
        })
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let Ok(Ok(_permit)) =
        tokio::time::timeout(RENDER_WAIT, state.renders.clone().acquire_owned()).await
    else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent scrapes\n".to_string(),
        )
            .into_response();
    };
    let m = state.metrics;
    // Reading the maps is a few syscalls; keep it off the async workers.
    let rendered = tokio::task::spawn_blocking(move || m.render()).await;
    match rendered {
        Ok(Ok(body)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(healthz))
        .with_state(AppState {
            metrics,
            renders: Arc::new(Semaphore::new(MAX_RENDERS)),
        })
}

/// Serves until `shutdown` resolves. Written on hyper directly (not
/// `axum::serve`) for the header timeout and the connection cap.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let app = router(metrics);
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: pause, go on.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let service = TowerToHyperService::new(app.clone());
        let connections = connections.clone();
        tokio::spawn(async move {
            // Over the cap: wait a little for a slot, else close.
            let Ok(Ok(permit)) =
                tokio::time::timeout(CONNECTION_WAIT, connections.acquire_owned()).await
            else {
                return;
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}
