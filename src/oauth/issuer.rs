//! One trusted issuer's keys: found through its metadata (or configured), fetched, cached,
//! refreshed in the background, fetched again for an unknown `kid` at a bounded rate, and kept
//! through an outage of the issuer until they are too old.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::keys::{Jwk, parse_set};

/// How keys age (see [`OAuthConfig`](crate::config::OAuthConfig)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) refresh: Duration,
    pub(crate) max_stale: Duration,
    pub(crate) refetch_interval: Duration,
    pub(crate) http_timeout: Duration,
}

/// The largest metadata or key set document read.
const MAX_DOCUMENT: usize = 1 << 20;

/// What the issuer's metadata says (the parts this resource uses).
#[derive(Debug, Default)]
pub(crate) struct Metadata {
    pub(crate) jwks_uri: Option<String>,
    pub(crate) introspection_endpoint: Option<String>,
}

#[derive(Default)]
struct State {
    keys: Arc<Vec<Jwk>>,
    fetched: Option<Instant>,
    /// Fetches tried, successful or not: a caller that saw this many waits for the one under
    /// way instead of starting another.
    attempts: u64,
    refetched_for_kid: Option<Instant>,
    /// A fetch for an unknown `kid` is under way: other such tokens wait for it.
    kid_fetch_running: bool,
    /// When the last fetch failed, if the one after it has not succeeded: no fetch is started
    /// within `refetch_interval` of it, so a down issuer is not asked once per request.
    failed: Option<Instant>,
    refreshing: bool,
    metadata: Option<Arc<Metadata>>,
}

/// The keys of one issuer.
pub(crate) struct IssuerKeys {
    pub(crate) issuer: String,
    jwks_uri: Option<String>,
    pub(crate) http: reqwest::Client,
    timing: Timing,
    state: Mutex<State>,
    fetching: tokio::sync::Mutex<()>,
}

/// The keys at hand for one request.
pub(crate) enum Current {
    /// Fresh enough to use; the number of fetch attempts so far.
    Usable(Arc<Vec<Jwk>>, u64),
    /// Never fetched, or older than `max_stale`: fetch before answering.
    Missing(u64),
    /// Missing, and the last fetch failed moments ago: refuse without asking again.
    Down,
}

impl IssuerKeys {
    pub(crate) fn new(
        issuer: String,
        jwks_uri: Option<String>,
        http: reqwest::Client,
        timing: Timing,
    ) -> Self {
        Self {
            issuer,
            jwks_uri,
            http,
            timing,
            state: Mutex::default(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The keys to check a token with now. Keys older than `refresh` are fetched again in the
    /// background and serve meanwhile (and, if the issuer is down, until `max_stale`).
    pub(crate) fn current(self: &Arc<Self>, now: Instant) -> Current {
        let mut state = self.state();
        let backing_off = state
            .failed
            .is_some_and(|t| now.saturating_duration_since(t) < self.timing.refetch_interval);
        let fresh = state
            .fetched
            .map(|t| now.saturating_duration_since(t))
            .filter(|age| *age <= self.timing.max_stale);
        let Some(age) = fresh else {
            return if backing_off {
                Current::Down
            } else {
                Current::Missing(state.attempts)
            };
        };
        if age > self.timing.refresh
            && !backing_off
            && !state.refreshing
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            state.refreshing = true;
            let me = Arc::clone(self);
            let seen = state.attempts;
            runtime.spawn(async move {
                let _ = me.fetch(seen).await;
                me.state().refreshing = false;
            });
        }
        Current::Usable(Arc::clone(&state.keys), state.attempts)
    }

    /// Whether a token naming a key the set lacks may cause a fetch now (reserving the slot),
    /// or wait for the one such a token caused and that is still under way.
    pub(crate) fn may_refetch(&self, now: Instant) -> bool {
        let mut state = self.state();
        let due = state
            .refetched_for_kid
            .is_none_or(|t| now.saturating_duration_since(t) >= self.timing.refetch_interval);
        if due {
            state.refetched_for_kid = Some(now);
            state.kid_fetch_running = true;
        }
        // A fetch whose request was dropped before it ran is not waited for past the time one
        // could take.
        let running = state.kid_fetch_running
            && state
                .refetched_for_kid
                .is_some_and(|t| now.saturating_duration_since(t) < self.timing.http_timeout);
        due || running
    }

    /// Fetches the key set, unless another attempt ended since the caller saw `seen`
    /// attempts. A failure keeps the keys there were.
    pub(crate) async fn fetch(&self, seen: u64) -> Result<(), String> {
        let _one_at_a_time = self.fetching.lock().await;
        if self.state().attempts != seen {
            return Ok(());
        }
        let fetched = self.fetch_now().await;
        let mut state = self.state();
        state.attempts += 1;
        state.kid_fetch_running = false;
        state.failed = fetched.is_err().then(Instant::now);
        let keys = fetched?;
        state.keys = Arc::new(keys);
        state.fetched = Some(Instant::now());
        Ok(())
    }

    async fn fetch_now(&self) -> Result<Vec<Jwk>, String> {
        let uri = match &self.jwks_uri {
            Some(uri) => uri.clone(),
            None => self
                .metadata()
                .await?
                .jwks_uri
                .clone()
                .ok_or_else(|| format!("the metadata of {} names no jwks_uri", self.issuer))?,
        };
        let body = self.get(&uri).await?;
        parse_set(&body).map_err(|e| format!("{uri}: {e}"))
    }

    /// The issuer's metadata: RFC 8414 (`/.well-known/oauth-authorization-server`, inserted
    /// before the issuer's path), else OpenID Connect discovery (appended). Its `issuer` must
    /// be this issuer exactly.
    pub(crate) async fn metadata(&self) -> Result<Arc<Metadata>, String> {
        if let Some(m) = &self.state().metadata {
            return Ok(Arc::clone(m));
        }
        let (origin, path) = split_origin(&self.issuer);
        let path = path.trim_end_matches('/');
        let candidates = [
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ];
        let mut last = String::new();
        for url in candidates {
            match self.get(&url).await {
                Ok(body) => {
                    let doc: Value = serde_json::from_slice(&body)
                        .map_err(|e| format!("{url} is not JSON: {e}"))?;
                    if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                        return Err(format!("{url} names another issuer"));
                    }
                    let url_field = |name: &str| {
                        let value = doc.get(name)?.as_str()?;
                        crate::config::check_url_text(value).then(|| value.to_owned())
                    };
                    let metadata = Arc::new(Metadata {
                        jwks_uri: url_field("jwks_uri"),
                        introspection_endpoint: url_field("introspection_endpoint"),
                    });
                    self.state().metadata = Some(Arc::clone(&metadata));
                    return Ok(metadata);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        send(self.http.get(url), url, self.timing.http_timeout).await
    }
}

/// Sends a request for a JSON document to the authorization server: the body of a successful
/// answer, refused past [`MAX_DOCUMENT`] bytes.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut response = request
        .header(http::header::ACCEPT, "application/json")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!(
                "{url}: the document is larger than {MAX_DOCUMENT} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `https://host:port` and the path after it.
pub(crate) fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::split_origin;

    #[test]
    fn origins_and_paths() {
        assert_eq!(
            split_origin("https://h.example:8443/realms/acme"),
            ("https://h.example:8443", "/realms/acme")
        );
        assert_eq!(
            split_origin("http://127.0.0.1:9"),
            ("http://127.0.0.1:9", "")
        );
    }
}
