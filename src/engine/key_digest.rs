//! Keys as the policy holds them: SHA-256 digests, never the keys themselves.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest of a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    /// The digest of a plaintext key.
    #[must_use]
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Parses `sha256:<64 hex>` (or bare hex).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }

    /// The first 16 bytes in hex: what names the key's limit counters (never the key).
    pub(crate) fn hex_prefix(&self) -> String {
        self.0[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A short printable id that does not reveal the key: `sha256:` and 12 hex digits.
    #[must_use]
    pub(crate) fn short_id(&self) -> String {
        let mut s = String::from("sha256:");
        for b in &self.0[..6] {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short_id())
    }
}

/// A key as configuration gives it: plaintext (hashed at once) or already a digest.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// A plaintext key.
    Plain(String),
    /// A digest.
    Digest(KeyDigest),
}

impl KeyMaterial {
    pub(crate) fn digest(&self) -> KeyDigest {
        match self {
            Self::Plain(k) => KeyDigest::of(k),
            Self::Digest(d) => *d,
        }
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.digest())
    }
}
