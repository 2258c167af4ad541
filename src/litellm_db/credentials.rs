//! Opening the MCP server credentials LiteLLM keeps encrypted in its `credentials` column.
//!
//! LiteLLM derives a 32-byte key as the SHA-256 of its salt key (`LITELLM_SALT_KEY`, else the
//! master key) and stores each value either as URL-safe base64 of a NaCl secretbox (24-byte
//! nonce, then the Poly1305 tag and the XSalsa20 ciphertext) or, when configured for it, as
//! `v2:gcm:` followed by URL-safe base64 of a 12-byte nonce and an AES-256-GCM ciphertext.

use base64::Engine as _;
use crypto_secretbox::aead::{Aead as _, KeyInit as _};
use sha2::{Digest as _, Sha256};

const GCM_PREFIX: &str = "v2:gcm:";

/// Why a stored value could not be opened (never the value itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Not base64 of anything the formats allow.
    NotCiphertext,
    /// The key does not open it (another salt key, or altered bytes).
    WrongKey,
    /// It opens, but not to UTF-8 text.
    NotText,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotCiphertext => "it is not a value LiteLLM encrypted",
            Self::WrongKey => "the salt key does not open it (is litellm_salt_key LiteLLM's?)",
            Self::NotText => "it does not decrypt to text",
        })
    }
}

fn decode(text: &str) -> Result<Vec<u8>, OpenError> {
    let engines = [
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(text.trim()).ok())
        .ok_or(OpenError::NotCiphertext)
}

/// Opens one value LiteLLM encrypted with `salt_key`.
pub(crate) fn open(value: &str, salt_key: &str) -> Result<String, OpenError> {
    let key: [u8; 32] = Sha256::digest(salt_key.as_bytes()).into();
    let plain = if let Some(rest) = value.strip_prefix(GCM_PREFIX) {
        open_gcm(&decode(rest)?, &key)?
    } else {
        let sealed = decode(value)?;
        // A nonce and a tag at least: a shorter value is not a secretbox.
        if sealed.len() < 24 + 16 {
            return Err(OpenError::NotCiphertext);
        }
        let (nonce, body) = sealed.split_at(24);
        let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
        cipher
            .decrypt(crypto_secretbox::Nonce::from_slice(nonce), body)
            .map_err(|_| OpenError::WrongKey)?
    };
    String::from_utf8(plain).map_err(|_| OpenError::NotText)
}

fn open_gcm(sealed: &[u8], key: &[u8; 32]) -> Result<Vec<u8>, OpenError> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(OpenError::NotCiphertext);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::NotCiphertext)?;
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| OpenError::WrongKey)?);
    let mut buf = body.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::empty(), &mut buf)
        .map_err(|_| OpenError::WrongKey)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Sealed the way LiteLLM's encrypt_value_helper seals (tests/litellm_db.rs opens values
    // sealed by PyNaCl itself, as LiteLLM calls it).
    fn seal_secretbox(plain: &str, salt: &str, nonce: [u8; 24]) -> String {
        let key: [u8; 32] = Sha256::digest(salt.as_bytes()).into();
        let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
        let body = cipher
            .encrypt(
                crypto_secretbox::Nonce::from_slice(&nonce),
                plain.as_bytes(),
            )
            .unwrap();
        let mut out = nonce.to_vec();
        out.extend(body);
        base64::engine::general_purpose::URL_SAFE.encode(out)
    }

    #[test]
    fn a_secretbox_opens_with_its_salt_key_only() {
        let sealed = seal_secretbox("ghp_secret", "sk-salt", [7; 24]);
        assert_eq!(open(&sealed, "sk-salt").unwrap(), "ghp_secret");
        assert_eq!(open(&sealed, "sk-other"), Err(OpenError::WrongKey));
        assert_eq!(
            open("plain-token", "sk-salt"),
            Err(OpenError::NotCiphertext)
        );
        assert_eq!(open("", "sk-salt"), Err(OpenError::NotCiphertext));
    }

    #[test]
    fn an_aes_gcm_value_opens() {
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let key: [u8; 32] = Sha256::digest(b"sk-salt").into();
        let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
        let nonce = [3u8; 12];
        let mut buf = b"token-123".to_vec();
        sealing
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .unwrap();
        let mut sealed = nonce.to_vec();
        sealed.extend(buf);
        let value = format!(
            "{GCM_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE.encode(&sealed)
        );
        assert_eq!(open(&value, "sk-salt").unwrap(), "token-123");
        assert_eq!(open(&value, "sk-other"), Err(OpenError::WrongKey));
    }
}
