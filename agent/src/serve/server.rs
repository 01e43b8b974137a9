//! The HTTP endpoint: `/metrics` (Prometheus text format) and `/healthz`.
//!
//! Hardened against misbehaving clients: a connection is accepted only
//! when one of [`MAX_CONNECTIONS`] slots is free (the rest wait in the
//! kernel's accept queue of [`ACCEPT_QUEUE`], costing nta nothing),
//! request headers must arrive within [`HEADER_TIMEOUT`], a connection
//! lives at most [`CONNECTION_TIMEOUT`], and at most [`MAX_RENDERS`]
//! scrapes render at once (the rest wait up to [`RENDER_WAIT`], then get
//! 503). Password checks are throttled ([`crate::serve::throttle`]).

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use axum::{
    Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::{
    output::export::monotonic_now_ns,
    serve::{health::Health, metrics::Metrics, throttle::AuthThrottle, webconfig::WebConfig},
};

/// The client's address, put on each request for the login throttle.
#[derive(Clone, Copy)]
struct Peer(std::net::IpAddr);

pub const MAX_CONNECTIONS: usize = 512;
/// Connections the kernel holds until nta has a slot for them.
pub const ACCEPT_QUEUE: u32 = 4096;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_RENDERS: usize = 8;
pub const RENDER_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    renders: Arc<Semaphore>,
    web: SharedWebConfig,
    health: Health,
    throttle: AuthThrottle,
    /// The last exposition and when its render started.
    last: Arc<tokio::sync::Mutex<Option<(tokio::time::Instant, bytes::Bytes)>>>,
}

/// The web config in force; a reload swaps it, and each new connection
/// (TLS) and request (basic auth) reads it.
pub type SharedWebConfig = Arc<RwLock<Arc<WebConfig>>>;

fn current(web: &SharedWebConfig) -> Arc<WebConfig> {
    web.read().map(|w| w.clone()).unwrap_or_default()
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

/// Binds early so a busy port fails before anything is attached. The
/// accept queue is long: connections wait there, not in nta, until a
/// slot is free.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let err = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::AddrInUse => ServerError::InUse { addr },
        _ => ServerError::Bind { addr, source },
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(ACCEPT_QUEUE).map_err(err)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let arrived = tokio::time::Instant::now();
    let Ok(Ok(_permit)) =
        tokio::time::timeout(RENDER_WAIT, state.renders.clone().acquire_owned()).await
    else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent scrapes\n".to_string(),
        )
            .into_response();
    };
    // Renders take turns; a scrape that waited reuses a render that
    // started after it arrived (its numbers are no older than the
    // request), so a storm of scrapers costs a render per wave, not one
    // each, and no answer is ever stale.
    let mut last = state.last.lock().await;
    let fresh = last
        .as_ref()
        .filter(|(started, _)| *started >= arrived)
        .map(|(_, body)| body.clone());
    let rendered = match fresh {
        Some(body) => Ok(Ok(body)),
        None => {
            let m = state.metrics;
            let started = tokio::time::Instant::now();
            // Reading the maps is a few syscalls; keep it off the async
            // workers.
            let r = tokio::task::spawn_blocking(move || m.render().map(bytes::Bytes::from)).await;
            if let Ok(Ok(body)) = &r {
                *last = Some((started, body.clone()));
            }
            r
        }
    };
    drop(last);
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

/// 200 once every interface is attached and the pipeline ticks; 503 with
/// the reasons otherwise.
async fn readyz(State(health): State<Health>) -> Response {
    let problems = health.problems(monotonic_now_ns());
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
            .into_response()
    }
}

/// Basic auth when the web config has users (every path, as
/// exporter-toolkit does). Credentials seen before skip bcrypt; the rest
/// take one of few bcrypt slots, and an address that keeps failing is
/// refused without a check for a while.
async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let web = current(&state.web);
    if web.auth_required() {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let peer = request.extensions().get::<Peer>().map(|p| p.0);
        let ok = match web.known(given.as_deref()) {
            Some(ok) => ok,
            None => {
                let now = std::time::Instant::now();
                if peer.is_some_and(|ip| state.throttle.refused(ip, now)) {
                    return (StatusCode::TOO_MANY_REQUESTS, "too many failed logins\n")
                        .into_response();
                }
                let Some(_slot) = state.throttle.bcrypt_slot().await else {
                    return (StatusCode::SERVICE_UNAVAILABLE, "too many logins at once\n")
                        .into_response();
                };
                // bcrypt takes tens of milliseconds: not on the async
                // workers.
                let ok = tokio::task::spawn_blocking(move || web.authorized(given.as_deref()))
                    .await
                    .unwrap_or(false);
                if !ok && let Some(ip) = peer {
                    state.throttle.failed(ip, now);
                }
                ok
            }
        };
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"nta\"")],
                "Unauthorized\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

impl axum::extract::FromRef<AppState> for Health {
    fn from_ref(state: &AppState) -> Health {
        state.health.clone()
    }
}

/// `/healthz` and `/readyz`, declared once: on the main listener behind
/// its TLS and password, and alone on `--health-listen` for probes.
fn health_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Health: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

pub fn router(metrics: Arc<Metrics>, web: SharedWebConfig, health: Health) -> Router {
    let state = AppState {
        metrics,
        renders: Arc::new(Semaphore::new(MAX_RENDERS)),
        web,
        health,
        throttle: AuthThrottle::default(),
        last: Arc::new(tokio::sync::Mutex::new(None)),
    };
    Router::new()
        .route("/metrics", get(self::metrics))
        .merge(health_routes())
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// The listeners: the main one, and an optional plain one for probes.
pub struct Listeners {
    pub main: TcpListener,
    pub health: Option<TcpListener>,
}

/// Serves until `shutdown` resolves: /metrics and health on the main
/// listener (TLS and basic auth per the web config), health alone,
/// plain, on the health listener. Written on hyper directly (not
/// `axum::serve`) for the header timeout and the connection cap.
pub async fn serve(
    listeners: Listeners,
    metrics: Arc<Metrics>,
    web: SharedWebConfig,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let main = accept_loop(
        listeners.main,
        router(metrics, web.clone(), health.clone()),
        Some(web),
        stopped.clone(),
    );
    match listeners.health {
        Some(l) => {
            let plain = accept_loop(l, health_routes().with_state(health), None, stopped);
            tokio::join!(main, plain);
        }
        None => main.await,
    }
    Ok(())
}

/// Accepts and serves connections on `listener` until `stop` turns true;
/// TLS when `web` says so.
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    web: Option<SharedWebConfig>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let mut shutdown = std::pin::pin!(stopped);
    loop {
        // A slot first: connections over the cap stay in the kernel's
        // accept queue instead of costing a task each.
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = &mut shutdown => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: pause, go on.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let tower = TowerToHyperService::new(app.clone());
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(Peer(peer.ip()));
                hyper::service::Service::call(&tower, request)
            },
        );
        let tls = web.as_ref().and_then(|w| current(w).tls.clone());
        tokio::spawn(async move {
            let served = async {
                match tls {
                    Some(config) => {
                        // The handshake counts against the header timeout.
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => serve_connection(s, service).await,
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }
                    None => serve_connection(stream, service).await,
                }
            };
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, served).await;
            drop(permit);
        });
    }
}

async fn serve_connection<I, S>(io: I, service: S)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = Response>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .await;
}
