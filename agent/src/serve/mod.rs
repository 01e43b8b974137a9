//! The HTTP side: the /metrics and /healthz server, the metrics registry
//! and kernel-counter collectors, and the web config (TLS, basic auth).

pub mod app_metrics;
pub mod health;
pub mod metrics;
pub mod server;
pub mod throttle;
pub mod webconfig;
