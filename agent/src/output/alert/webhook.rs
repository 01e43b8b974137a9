//! `--webhook URL`: each alert event is POSTed as JSON. A bounded queue
//! and a thread of its own keep a slow or dead endpoint away from the
//! other sinks; failed posts are retried with exponential backoff, and
//! what is dropped (queue full) or fails for good is counted.

use std::{
    sync::{
        Arc, OnceLock,
        mpsc::{self, SyncSender, TrySendError},
    },
    thread,
    time::{Duration, Instant},
};

use super::{AlertContext, AlertError, AlertMetrics, AlertOutput, AlertSink};
use crate::pipeline::detect::AlertEvent;

/// `--webhook URL` / `[alerts] webhook`: an http(s) URL, checked when the
/// flag or the file is read. Shown redacted (see [`redacted`]).
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct WebhookUrl(String);

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WebhookUrl")
            .field(&redacted(&self.0))
            .finish()
    }
}

impl std::str::FromStr for WebhookUrl {
    type Err = WebhookError;

    fn from_str(url: &str) -> Result<WebhookUrl, WebhookError> {
        WebhookConfig::new(url).map(|c| WebhookUrl(c.url))
    }
}

impl TryFrom<String> for WebhookUrl {
    type Error = WebhookError;

    fn try_from(url: String) -> Result<WebhookUrl, WebhookError> {
        url.parse()
    }
}

impl AlertOutput for WebhookUrl {
    fn key(&self) -> &'static str {
        "alerts.webhook"
    }

    fn open(&self, cx: &AlertContext) -> Result<Box<dyn AlertSink>, AlertError> {
        let config = WebhookConfig::new(&self.0)?;
        Ok(Box::new(WebhookSink::start(config, cx.metrics.clone())))
    }
}

/// A URL the webhook cannot post to.
#[derive(Debug, thiserror::Error)]
#[error("webhook {url}: {why}")]
pub struct WebhookError {
    url: String,
    why: String,
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    /// Events waiting to be posted.
    pub queue: usize,
    /// Attempts per event (the first plus retries).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// How long a stop or reload waits for queued events.
    pub flush_limit: Duration,
}

impl WebhookConfig {
    pub fn new(url: &str) -> Result<WebhookConfig, WebhookError> {
        let parsed: ureq::http::Uri = url.parse().map_err(|e| WebhookError {
            url: redacted(url),
            why: format!("not a URL: {e}"),
        })?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(WebhookError {
                url: redacted(url),
                why: "needs an http:// or https:// URL with a host".into(),
            });
        }
        Ok(WebhookConfig {
            url: url.to_string(),
            queue: 1024,
            attempts: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(5),
            flush_limit: Duration::from_secs(10),
        })
    }
}

pub struct WebhookSink {
    tx: Option<SyncSender<Vec<u8>>>,
    handle: Option<thread::JoinHandle<()>>,
    metrics: AlertMetrics,
    /// Set by `flush`: past it the thread stops posting and counts what
    /// is left as dropped, so a stop or reload never hangs on a dead
    /// endpoint.
    deadline: Arc<OnceLock<Instant>>,
    flush_limit: Duration,
}

const KIND: &str = "webhook";

/// `scheme://host:port/…`: the path and query often carry a secret
/// token, so logs and errors never show them.
pub fn redacted(url: &str) -> String {
    match url.parse::<ureq::http::Uri>() {
        Ok(u) => {
            let scheme = u.scheme_str().unwrap_or("?");
            let host = u.authority().map_or("?", |a| a.as_str());
            // Credentials in the authority are secrets too.
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            format!("{scheme}://{host}/…")
        }
        Err(_) => "(not a URL)".into(),
    }
}

impl WebhookSink {
    pub fn start(config: WebhookConfig, metrics: AlertMetrics) -> WebhookSink {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(config.queue);
        let m = metrics.clone();
        let deadline: Arc<OnceLock<Instant>> = Arc::default();
        let flush_limit = config.flush_limit;
        let stop_at = deadline.clone();
        let handle = thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(config.timeout))
                .http_status_as_error(true)
                // A redirected POST turns into a body-less GET that some
                // endpoints answer 200: that is no delivery.
                .max_redirects(0)
                .build()
                .into();
            let shown = redacted(&config.url);
            let mut failing = false;
            while let Ok(body) = rx.recv() {
                if stop_at.get().is_some_and(|d| Instant::now() >= *d) {
                    m.dropped.with_label_values(&[KIND]).inc();
                    continue;
                }
                match post(&agent, &config, &body, &stop_at) {
                    Ok(()) => {
                        m.delivered.with_label_values(&[KIND]).inc();
                        if failing {
                            tracing::info!(url = %shown, "webhook delivers again");
                            failing = false;
                        }
                    }
                    Err(why) => {
                        m.errors.with_label_values(&[KIND]).inc();
                        if !failing {
                            tracing::error!(url = %shown, error = %why, "webhook failed after retries; counting errors until it recovers");
                            failing = true;
                        }
                    }
                }
            }
        });
        WebhookSink {
            tx: Some(tx),
            handle: Some(handle),
            metrics,
            deadline,
            flush_limit,
        }
    }
}

/// Posts with retries; a redirect fails at once (retrying cannot help).
fn post(
    agent: &ureq::Agent,
    c: &WebhookConfig,
    body: &[u8],
    stop_at: &OnceLock<Instant>,
) -> Result<(), String> {
    let mut wait = c.backoff;
    let mut last = String::new();
    for attempt in 0..c.attempts.max(1) {
        if attempt > 0 {
            // No retries once a stop's time is up.
            if stop_at.get().is_some_and(|d| Instant::now() + wait >= *d) {
                break;
            }
            thread::sleep(wait);
            wait = wait.saturating_mul(2);
        }
        match agent
            .post(&c.url)
            .header("content-type", "application/json")
            .send(body)
        {
            Ok(r) if r.status().is_redirection() => {
                return Err(format!(
                    "answered {} (a redirect; not followed)",
                    r.status()
                ));
            }
            Ok(_) => return Ok(()),
            Err(e) => last = redact_error(&e.to_string(), &c.url),
        }
    }
    Err(last)
}

/// An error text without the URL's secret part.
fn redact_error(text: &str, url: &str) -> String {
    text.replace(url, &redacted(url))
}

impl AlertSink for WebhookSink {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn counts_itself(&self) -> bool {
        true
    }

    fn deliver(&mut self, _event: &AlertEvent, json: &[u8]) -> Result<(), AlertError> {
        let Some(tx) = &self.tx else { return Ok(()) };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            tx.try_send(json.to_vec())
        {
            self.metrics.dropped.with_label_values(&[KIND]).inc();
        }
        Ok(())
    }

    /// Waits for the queue to drain, at most `flush_limit`; what is
    /// still queued then is counted as dropped.
    fn flush(&mut self) -> Result<(), AlertError> {
        let _ = self.deadline.set(Instant::now() + self.flush_limit);
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        Ok(())
    }
}
