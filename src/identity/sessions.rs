//! Which key opened which MCP session.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use http::Response;
use sha2::{Digest as _, Sha256};

use super::presented::{one_header, session_header};
use crate::engine::KeyDigest;
use crate::protocol::SESSION_HEADER;
use crate::rejection::Rejection;

/// Session ids bound to the caller that opened them.
///
/// Two kinds:
///
/// - [`SessionBindings::with_capacity`] (the default): a table in this process, bounded in size.
///   When full, the oldest binding is dropped; that session's next request gets 404 and its
///   client starts a new session, which is the protocol's normal recovery. A session opened
///   through another process is unknown here (404).
/// - [`SessionBindings::signed`]: no table. The id the caller sees is the inner service's id
///   followed by `.` and an HMAC-SHA256 tag over it and the caller's key digest (or token
///   subject), made with a secret every replica shares. Any replica verifies it; a forged id,
///   or one presented by another caller, gets the same 404 everywhere; the inner service sees
///   its own id. Use it when several replicas stand in front of services whose sessions they
///   share.
pub struct SessionBindings {
    inner: Mutex<Inner>,
    capacity: usize,
    secret: Option<Box<[u8]>>,
}

impl fmt::Debug for SessionBindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBindings")
            .field("capacity", &self.capacity)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The tag of `session` for `owner`: 128 bits, as 32 hex digits.
fn tag(secret: &[u8], session: &str, owner: Option<&KeyDigest>) -> [u8; 32] {
    let (flag, digest) = match owner {
        Some(d) => (1u8, d.0),
        None => (0u8, [0u8; 32]),
    };
    let mac = hmac(
        secret,
        &[
            b"mcp-gatekeeper session v1\0",
            &[flag],
            &digest,
            session.as_bytes(),
        ],
    );
    let mut hex = [0u8; 32];
    for (i, b) in mac[..16].iter().enumerate() {
        hex[2 * i] = b"0123456789abcdef"[usize::from(b >> 4)];
        hex[2 * i + 1] = b"0123456789abcdef"[usize::from(b & 15)];
    }
    hex
}

#[derive(Debug, Default)]
struct Inner {
    owners: HashMap<Box<str>, Option<KeyDigest>>,
    order: VecDeque<Box<str>>,
}

impl Default for SessionBindings {
    fn default() -> Self {
        Self::with_capacity(100_000)
    }
}

impl SessionBindings {
    /// Bindings that keep at most `capacity` sessions.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            secret: None,
        }
    }

    /// Bindings that every replica holding the same `secret` (at least 32 bytes) verifies, with
    /// no table: see the [type docs](Self).
    ///
    /// # Panics
    ///
    /// When `secret` is shorter than 32 bytes.
    #[must_use]
    pub fn signed(secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref();
        assert!(
            secret.len() >= 32,
            "a session secret must be at least 32 bytes"
        );
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: 1,
            secret: Some(secret.into()),
        }
    }

    /// Whether these bindings are [`SessionBindings::signed`].
    #[must_use]
    pub fn is_signed(&self) -> bool {
        self.secret.is_some()
    }

    /// The id a caller sees for the inner service's `session`: itself, or signed.
    pub(crate) fn outward(&self, session: &str, owner: Option<&KeyDigest>) -> Option<String> {
        let secret = self.secret.as_deref()?;
        let tag = tag(secret, session, owner);
        let mut out = String::with_capacity(session.len() + 33);
        out.push_str(session);
        out.push('.');
        out.push_str(std::str::from_utf8(&tag).ok()?);
        Some(out)
    }

    /// The inner service's id of a signed `presented` id, when `owner` opened it.
    pub(crate) fn inward<'a>(
        &self,
        presented: &'a str,
        owner: Option<&KeyDigest>,
    ) -> Option<&'a str> {
        let secret = self.secret.as_deref()?;
        let (session, given) = presented.rsplit_once('.')?;
        let want = tag(secret, session, owner);
        // Compared in constant time: the tag is a secret until matched.
        let given = given.as_bytes();
        if given.len() != want.len() {
            return None;
        }
        let diff = given
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then_some(session)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // widens access (at worst a binding is missing: 404), so recover the guard.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `owner` opened `session`.
    pub fn bind(&self, session: &str, owner: Option<KeyDigest>) {
        let mut inner = self.lock();
        if inner.owners.insert(session.into(), owner).is_none() {
            inner.order.push_back(session.into());
        }
        while inner.owners.len() > self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.owners.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Forgets a session (it was deleted).
    pub fn unbind(&self, session: &str) {
        let mut inner = self.lock();
        if inner.owners.remove(session).is_some() {
            inner.order.retain(|s| &**s != session);
        }
    }

    /// Whether `session` was opened by `owner`.
    #[must_use]
    pub fn is_bound_to(&self, session: &str, owner: Option<&KeyDigest>) -> bool {
        self.lock()
            .owners
            .get(session)
            .is_some_and(|o| o.as_ref() == owner)
    }

    /// How many sessions are bound.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().owners.len()
    }

    /// Whether no session is bound.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What admitting a request decided about its MCP session, applied to the reply on its way
/// out.
pub(crate) struct Binding {
    bindings: Arc<SessionBindings>,
    session: Option<String>,
    digest: Option<KeyDigest>,
    deleting: bool,
}

impl Binding {
    /// Checks the session a request presents against `bindings` for the caller of `digest`; a
    /// signed id is replaced by the inner service's own. Refused with 404 when it is not the
    /// caller's.
    pub(crate) fn admit(
        bindings: &Arc<SessionBindings>,
        parts: &mut http::request::Parts,
        digest: Option<KeyDigest>,
    ) -> Result<Self, Rejection> {
        let session = session_header(&parts.headers)?;
        if bindings.is_signed() {
            let inner = match session {
                None => None,
                Some(id) => Some(
                    bindings
                        .inward(id, digest.as_ref())
                        .ok_or_else(Rejection::session_not_found)?
                        .to_owned(),
                ),
            };
            if let Some(inner) = &inner {
                // The inner service sees its own id.
                let value = http::HeaderValue::from_str(inner)
                    .map_err(|_| Rejection::session_not_found())?;
                parts.headers.insert(SESSION_HEADER, value);
            }
            return Ok(Self {
                bindings: Arc::clone(bindings),
                session: inner,
                digest,
                deleting: false,
            });
        }
        if let Some(id) = session
            && !bindings.is_bound_to(id, digest.as_ref())
        {
            return Err(Rejection::session_not_found());
        }
        Ok(Self {
            bindings: Arc::clone(bindings),
            session: session.map(str::to_owned),
            digest,
            deleting: parts.method == http::Method::DELETE,
        })
    }

    /// Binds a session the inner service opened to its caller and forgets one deleted; with
    /// signed bindings, signs every session id that goes out for its caller.
    pub(crate) fn bind<B>(self, mut response: Response<B>) -> Response<B> {
        if self.bindings.is_signed() {
            let signed = match one_header(response.headers(), &SESSION_HEADER) {
                Ok(Some(inner)) => self.bindings.outward(inner, self.digest.as_ref()),
                _ => None,
            };
            if let Some(value) = signed.and_then(|s| http::HeaderValue::from_str(&s).ok()) {
                response.headers_mut().insert(SESSION_HEADER, value);
            }
            return response;
        }
        match &self.session {
            None => {
                if let Ok(Some(new)) = one_header(response.headers(), &SESSION_HEADER) {
                    self.bindings.bind(new, self.digest);
                }
            }
            Some(id) if self.deleting && response.status().is_success() => {
                self.bindings.unbind(id);
            }
            Some(_) => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (test case 6).
        let key = [0xaau8; 131];
        let mac = hmac(
            &key,
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        );
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signed_ids_verify_for_their_owner_only() {
        let secret = [7u8; 32];
        let a = KeyDigest::of("a");
        let b = KeyDigest::of("b");
        let here = SessionBindings::signed(secret);
        let there = SessionBindings::signed(secret);
        let id = here.outward("inner-1", Some(&a)).unwrap();
        assert!(id.starts_with("inner-1."));
        assert_eq!(there.inward(&id, Some(&a)), Some("inner-1"));
        assert_eq!(there.inward(&id, Some(&b)), None);
        assert_eq!(there.inward(&id, None), None);
        assert_eq!(there.inward("inner-1", Some(&a)), None);
        let mut forged = id.clone();
        forged.replace_range(id.len() - 1.., if id.ends_with('0') { "1" } else { "0" });
        assert_eq!(there.inward(&forged, Some(&a)), None);
        let other = SessionBindings::signed([8u8; 32]);
        assert_eq!(other.inward(&id, Some(&a)), None);
        assert_eq!(SessionBindings::default().outward("x", Some(&a)), None);
    }

    #[test]
    fn binds_unbinds_and_evicts_oldest() {
        let a = KeyDigest::of("a");
        let b = KeyDigest::of("b");
        let s = SessionBindings::with_capacity(2);
        s.bind("s1", Some(a));
        assert!(s.is_bound_to("s1", Some(&a)));
        assert!(!s.is_bound_to("s1", Some(&b)));
        assert!(!s.is_bound_to("s1", None));
        assert!(!s.is_bound_to("nope", Some(&a)));
        s.bind("s2", Some(b));
        s.bind("s3", Some(b));
        assert_eq!(s.len(), 2);
        assert!(!s.is_bound_to("s1", Some(&a)), "oldest evicted");
        s.unbind("s2");
        assert!(!s.is_bound_to("s2", Some(&b)));
        assert_eq!(s.len(), 1);
    }
}
