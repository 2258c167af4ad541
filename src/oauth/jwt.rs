//! Compact JWS tokens: the shape test, decoding, and the signature check with ring for the
//! four accepted algorithms. Nothing here trusts a token; [`super::verify`] decides.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// An accepted signature algorithm. `none` and the HMAC family have no variant: a token
/// naming them is refused before any key is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alg {
    Rs256,
    Ps256,
    Es256,
    EdDsa,
}

/// Every accepted algorithm.
pub(crate) const ALL: [Alg; 4] = [Alg::Rs256, Alg::Ps256, Alg::Es256, Alg::EdDsa];

impl Alg {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::Rs256,
            "PS256" => Self::Ps256,
            "ES256" => Self::Es256,
            "EdDSA" => Self::EdDsa,
            _ => return None,
        })
    }
}

/// Whether a credential has the shape of a JWT: three non-empty base64url segments.
pub(crate) fn is_jwt(credential: &str) -> bool {
    let mut segments = 0;
    for part in credential.split('.') {
        let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if part.is_empty() || !part.bytes().all(base64url) {
            return false;
        }
        segments += 1;
    }
    segments == 3
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    /// Extensions the signer says must be understood; this resource understands none.
    crit: Option<serde_json::Value>,
}

/// A decoded, not yet verified token.
pub(crate) struct Jws<'t> {
    pub(crate) alg: Alg,
    pub(crate) kid: Option<String>,
    pub(crate) claims: serde_json::Value,
    signed: &'t [u8],
    signature: Vec<u8>,
}

fn segment(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Splits and decodes a token. The error is a description the caller may see.
pub(crate) fn decode(token: &str) -> Result<Jws<'_>, &'static str> {
    let mut parts = token.splitn(3, '.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("the token is not a JWT");
    };
    let header: Header = segment(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the token's header is unreadable")?;
    if header.crit.is_some() {
        return Err("the token requires extensions this resource does not support");
    }
    let alg = Alg::parse(&header.alg).ok_or("the token's signature algorithm is not accepted")?;
    let claims: serde_json::Value = segment(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(serde_json::Value::is_object)
        .ok_or("the token's claims are unreadable")?;
    let signature = segment(s).ok_or("the token's signature is unreadable")?;
    Ok(Jws {
        alg,
        kid: header.kid,
        claims,
        signed: &token.as_bytes()[..h.len() + 1 + p.len()],
        signature,
    })
}

/// A public key of a trusted issuer.
#[derive(Debug)]
pub(crate) enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed P-256 point (`04 || x || y`).
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// Whether this key's type fits `alg`.
    pub(crate) fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (Self::Rsa { .. }, Alg::Rs256 | Alg::Ps256)
                | (Self::P256(_), Alg::Es256)
                | (Self::Ed25519(_), Alg::EdDsa)
        )
    }

    fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        match (self, alg) {
            (Self::Rsa { n, e }, Alg::Rs256 | Alg::Ps256) => {
                let params = if alg == Alg::Rs256 {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &signature::RSA_PSS_2048_8192_SHA256
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok()
            }
            (Self::P256(point), Alg::Es256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Self::Ed25519(x), Alg::EdDsa) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, sig)
                .is_ok(),
            _ => false,
        }
    }
}

impl Jws<'_> {
    /// Whether `key` signed this token with the algorithm its header names.
    pub(crate) fn signed_by(&self, key: &PublicKey) -> bool {
        key.fits(self.alg) && key.verify(self.alg, self.signed, &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_base64url_segments_look_like_a_jwt() {
        assert!(is_jwt("eyJh.eyJz.c2ln"));
        for not in [
            "sk-alice", "a.b", "a.b.c.d", "a..c", "a.b.c=", "a.b/c.d", "",
        ] {
            assert!(!is_jwt(not), "{not}");
        }
    }

    #[test]
    fn none_and_hmac_are_refused_before_any_key() {
        let enc = |v: &str| URL_SAFE_NO_PAD.encode(v);
        for alg in ["none", "HS256", "HS512", "RS384", "rs256"] {
            let token = format!(
                "{}.{}.{}",
                enc(&format!(r#"{{"alg":"{alg}"}}"#)),
                enc(r#"{"sub":"x"}"#),
                enc("sig")
            );
            assert_eq!(
                decode(&token).err(),
                Some("the token's signature algorithm is not accepted"),
                "{alg}"
            );
        }
        let crit = format!(
            "{}.{}.{}",
            enc(r#"{"alg":"ES256","crit":["b64"]}"#),
            enc("{}"),
            enc("s")
        );
        assert!(decode(&crit).is_err());
    }
}
