//! `--webhook URL`: each alert event is POSTed as JSON. A bounded queue
//! and a thread of its own keep a slow or dead endpoint away from the
//! other sinks; failed posts are retried with exponential backoff, and
//! what is dropped (queue full) or fails for good is counted.

use std::{
    sync::mpsc::{self, SyncSender, TrySendError},
    thread,
    time::Duration,
};

use super::{AlertContext, AlertError, AlertMetrics, AlertOutput, AlertSink};
use crate::pipeline::detect::AlertEvent;

/// `--webhook URL` / `[alerts] webhook`: an http(s) URL, checked when the
/// flag or the file is read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct WebhookUrl(String);

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
}

impl WebhookConfig {
    pub fn new(url: &str) -> Result<WebhookConfig, WebhookError> {
        let parsed: ureq::http::Uri = url.parse().map_err(|e| WebhookError {
            url: url.to_string(),
            why: format!("not a URL: {e}"),
        })?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(WebhookError {
                url: url.to_string(),
                why: "needs an http:// or https:// URL with a host".into(),
            });
        }
        Ok(WebhookConfig {
            url: url.to_string(),
            queue: 1024,
            attempts: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(5),
        })
    }
}

pub struct WebhookSink {
    tx: Option<SyncSender<Vec<u8>>>,
    handle: Option<thread::JoinHandle<()>>,
    metrics: AlertMetrics,
}

const KIND: &str = "webhook";

impl WebhookSink {
    pub fn start(config: WebhookConfig, metrics: AlertMetrics) -> WebhookSink {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(config.queue);
        let m = metrics.clone();
        let handle = thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(config.timeout))
                .http_status_as_error(true)
                .build()
                .into();
            let mut failing = false;
            while let Ok(body) = rx.recv() {
                match post(&agent, &config, &body) {
                    Ok(()) => {
                        m.delivered.with_label_values(&[KIND]).inc();
                        if failing {
                            tracing::info!(url = %config.url, "webhook delivers again");
                            failing = false;
                        }
                    }
                    Err(why) => {
                        m.errors.with_label_values(&[KIND]).inc();
                        if !failing {
                            tracing::error!(url = %config.url, error = %why, "webhook failed after retries; counting errors until it recovers");
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
        }
    }
}

fn post(agent: &ureq::Agent, c: &WebhookConfig, body: &[u8]) -> Result<(), String> {
    let mut wait = c.backoff;
    let mut last = String::new();
    for attempt in 0..c.attempts.max(1) {
        if attempt > 0 {
            thread::sleep(wait);
            wait = wait.saturating_mul(2);
        }
        match agent
            .post(&c.url)
            .header("content-type", "application/json")
            .send(body)
        {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
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

    /// Waits for the queue to drain (each event at most its retries).
    fn flush(&mut self) -> Result<(), AlertError> {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        Ok(())
    }
}
