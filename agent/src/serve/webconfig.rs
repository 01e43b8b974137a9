//! `--web-config-file`: TLS and basic auth for /metrics, in the format of
//! the Prometheus exporter-toolkit (node_exporter's `--web.config.file`),
//! so one file serves every exporter on a host and Prometheus' own
//! `promtool check web-config` validates it.
//!
//! Supported: `tls_server_config` (`cert_file`, `key_file`,
//! `client_auth_type` NoClientCert / RequireAndVerifyClientCert /
//! VerifyClientCertIfGiven, `client_ca_file`, `min_version`/`max_version`
//! TLS12/TLS13) and `basic_auth_users` (bcrypt hashes). Keys nta does not
//! implement are errors rather than silently ignored.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde::Deserialize;
use tokio_rustls::rustls::{self, ServerConfig, server::WebPkiClientVerifier};

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {why}")]
    Invalid {
        path: PathBuf,
        key: String,
        why: String,
    },
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    tls_server_config: Option<TlsServerConfig>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
}

/// A loaded web config: what the server applies to each connection.
#[derive(Default)]
pub struct WebConfig {
    pub tls: Option<Arc<ServerConfig>>,
    users: BTreeMap<String, String>,
    /// Credentials that verified, so a scrape every few seconds does not
    /// pay bcrypt's deliberate cost each time (exporter-toolkit caches
    /// the same way). Keyed by a SHA-1 of user, password and hash.
    verified: Mutex<HashSet<[u8; 20]>>,
    /// A hash no password matches, at the users' bcrypt cost: an unknown
    /// user costs the same check as a known one, so timing does not tell
    /// which user names exist.
    dummy: String,
}

/// The highest bcrypt cost a user's hash may have.
const MAX_BCRYPT_COST: u32 = 16;

/// Verified credentials remembered at most (then the cache starts over).
const VERIFIED_CACHE: usize = 1024;

impl WebConfig {
    /// The file's TLS and users, or none without a file (plain HTTP, no
    /// auth).
    pub fn load_optional(path: Option<&Path>) -> Result<WebConfig, WebConfigError> {
        path.map_or_else(|| Ok(WebConfig::default()), WebConfig::load)
    }

    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The config in `text`, as if read from `path` (relative certificate
    /// paths are relative to it).
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
        let file: WebConfigFile = if text.trim().is_empty() {
            WebConfigFile::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| WebConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        };
        let invalid = |key: &str, why: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            why,
        };
        // Relative paths are relative to the web config file, as in
        // exporter-toolkit.
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = file
            .tls_server_config
            .map(|t| tls_config(&t, base).map_err(|(k, why)| invalid(k, why)))
            .transpose()?;
        let users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(invalid(
                    "basic_auth_users",
                    format!("user name {user:?} contains ':'"),
                ));
            }
            // Every login pays the hash's cost: past 16 (about 4 s here)
            // one client could keep the server's bcrypt slots busy.
            if bcrypt_cost(hash).is_some_and(|c| c > MAX_BCRYPT_COST) {
                return Err(invalid(
                    &format!("basic_auth_users.{user}"),
                    format!("bcrypt cost above {MAX_BCRYPT_COST}; use 10 to 12"),
                ));
            }
            if bcrypt::verify("", hash).is_err() {
                return Err(invalid(
                    &format!("basic_auth_users.{user}"),
                    "not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                        .into(),
                ));
            }
        }
        let cost = users.values().filter_map(|h| bcrypt_cost(h)).max();
        let dummy = match cost {
            Some(cost) => {
                let password = format!("{:?}", std::time::SystemTime::now());
                bcrypt::hash(password, cost)
                    .map_err(|e| invalid("basic_auth_users", e.to_string()))?
            }
            None => String::new(),
        };
        Ok(WebConfig {
            tls,
            users,
            verified: Mutex::new(HashSet::new()),
            dummy,
        })
    }

    pub fn auth_required(&self) -> bool {
        !self.users.is_empty()
    }

    /// The answer for `Authorization` header value `header` when it needs
    /// no bcrypt (no users, credentials verified before, or no credentials
    /// at all); `None` when only [`WebConfig::authorized`] can tell.
    pub fn known(&self, header: Option<&str>) -> Option<bool> {
        if self.users.is_empty() {
            return Some(true);
        }
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return Some(false);
        };
        let key = cache_key(&user, &password, self.hash_of(&user));
        self.verified
            .lock()
            .is_ok_and(|v| v.contains(&key))
            .then_some(true)
    }

    /// The user's hash, or the dummy one at the same cost.
    fn hash_of(&self, user: &str) -> &str {
        self.users
            .get(user)
            .map_or(self.dummy.as_str(), String::as_str)
    }

    /// Whether `Authorization` header value `header` names a user with
    /// its password. Runs bcrypt (tens of milliseconds): call off the
    /// async workers, and ask [`WebConfig::known`] first.
    pub fn authorized(&self, header: Option<&str>) -> bool {
        if let Some(answer) = self.known(header) {
            return answer;
        }
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        let hash = self.hash_of(&user);
        let key = cache_key(&user, &password, hash);
        let ok = bcrypt::verify(&password, hash).unwrap_or(false) && self.users.contains_key(&user);
        if ok && let Ok(mut v) = self.verified.lock() {
            if v.len() >= VERIFIED_CACHE {
                v.clear();
            }
            v.insert(key);
        }
        ok
    }
}

/// The cost of a bcrypt hash (`$2b$10$...` is 10).
fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

fn cache_key(user: &str, password: &str, hash: &str) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    for part in [user, password, hash] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = header.strip_prefix("Basic ")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

type KeyError = (&'static str, String);

fn tls_config(t: &TlsServerConfig, base: &Path) -> Result<Arc<ServerConfig>, KeyError> {
    let resolve = |p: &Path| base.join(p);
    let cert_path = resolve(&t.cert_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            (
                "tls_server_config.cert_file",
                format!("{}: {e}", cert_path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err((
            "tls_server_config.cert_file",
            format!("{}: no certificate in it", cert_path.display()),
        ));
    }
    let key_path = resolve(&t.key_file);
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        (
            "tls_server_config.key_file",
            format!("{}: {e}", key_path.display()),
        )
    })?;
    let versions = tls_versions(t.min_version.as_deref(), t.max_version.as_deref())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| ("tls_server_config.min_version", e.to_string()))?;
    let client_auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match client_auth {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some(ca) = &t.client_ca_file else {
                return Err((
                    "tls_server_config.client_ca_file",
                    format!("needed with client_auth_type {client_auth}"),
                ));
            };
            let ca_path = resolve(ca);
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&ca_path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    (
                        "tls_server_config.client_ca_file",
                        format!("{}: {e}", ca_path.display()),
                    )
                })?
            {
                roots.add(c).map_err(|e| {
                    (
                        "tls_server_config.client_ca_file",
                        format!("{}: {e}", ca_path.display()),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if client_auth == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| ("tls_server_config.client_ca_file", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        other => {
            return Err((
                "tls_server_config.client_auth_type",
                format!(
                    "{other:?} is not supported; use NoClientCert, RequireAndVerifyClientCert or VerifyClientCertIfGiven"
                ),
            ));
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| ("tls_server_config.key_file", e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn tls_versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, KeyError> {
    let rank = |key: &'static str, v: Option<&str>, default: u8| match v {
        None => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other) => Err((
            key,
            format!("{other:?} is not supported; use TLS12 or TLS13"),
        )),
    };
    let lo = rank("tls_server_config.min_version", min, 12)?;
    let hi = rank("tls_server_config.max_version", max, 13)?;
    if lo > hi {
        return Err((
            "tls_server_config.max_version",
            "below min_version".to_string(),
        ));
    }
    let mut v = Vec::new();
    if (lo..=hi).contains(&13) {
        v.push(&rustls::version::TLS13);
    }
    if (lo..=hi).contains(&12) {
        v.push(&rustls::version::TLS12);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WebConfig, String> {
        let dir = std::env::temp_dir().join(format!("nta-webconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let p = dir.join(format!("{:x}.yml", cache_key(text, "", "")[0]));
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
        WebConfig::load(&p).map_err(|e| e.to_string().replace(&dir.display().to_string(), "D"))
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_caches() {
        let hash = bcrypt::hash("s3cret", 4).unwrap_or_default();
        let c = load(&format!("basic_auth_users:\n  prom: '{hash}'\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.auth_required());
        use base64::Engine;
        let h = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(c.authorized(Some(&h("prom", "s3cret"))));
        assert!(c.authorized(Some(&h("prom", "s3cret"))), "from the cache");
        assert!(!c.authorized(Some(&h("prom", "wrong"))));
        assert!(!c.authorized(Some(&h("other", "s3cret"))));
        assert!(!c.authorized(None));
        assert!(!c.authorized(Some("Bearer x")));
        assert!(!c.authorized(Some("Basic !!!")));
    }

    #[test]
    fn unknown_users_cost_a_bcrypt_at_the_users_cost() {
        let hash = bcrypt::hash("s3cret", 5).unwrap_or_default();
        let c = load(&format!("basic_auth_users:\n  prom: '{hash}'\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bcrypt_cost(&hash), Some(5));
        assert_eq!(bcrypt_cost(c.hash_of("nobody")), Some(5));
        assert_eq!(c.hash_of("prom"), hash);
        // Unknown users are never in the cache and never let in.
        use base64::Engine;
        let h = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("nobody:x")
        );
        assert_eq!(c.known(Some(&h)), None, "needs a bcrypt like a real user");
        assert!(!c.authorized(Some(&h)));
    }

    #[test]
    fn no_users_means_open() {
        let c = load("").unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.auth_required() && c.authorized(None) && c.tls.is_none());
    }

    #[test]
    fn errors_are_precise() {
        let e = load("basic_auth_users:\n  prom: plaintext\n")
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("basic_auth_users.prom: not a bcrypt hash"),
            "{e}"
        );
        // A cost that would make every login take minutes.
        let slow = bcrypt::hash("x", 4)
            .unwrap_or_default()
            .replacen("$04$", "$31$", 1);
        let e = load(&format!("basic_auth_users:\n  prom: '{slow}'\n"))
            .err()
            .unwrap_or_default();
        assert!(e.contains("bcrypt cost above 16"), "{e}");
        let e = load(
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  cipher_suites: [x]\n",
        )
        .err()
        .unwrap_or_default();
        assert!(
            e.contains("unknown field `cipher_suites`") && e.contains("line 4"),
            "{e}"
        );
        let e = load("tls_server_config:\n  cert_file: missing.crt\n  key_file: a.key\n")
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("tls_server_config.cert_file: D/missing.crt"),
            "{e}"
        );
        let e = load("http_server_config:\n  http2: false\n")
            .err()
            .unwrap_or_default();
        assert!(e.contains("unknown field `http_server_config`"), "{e}");
        assert!(tls_versions(Some("TLS11"), None).is_err());
        assert!(tls_versions(Some("TLS13"), Some("TLS12")).is_err());
        assert_eq!(tls_versions(Some("TLS13"), None).map(|v| v.len()), Ok(1));
    }
}
