//! JSON Web Key sets: the public keys of one issuer, as its `jwks_uri` serves them.
//!
//! A key this resource cannot use (an encryption key, an unknown key type or curve, an RSA
//! key under 2048 bits, a key whose `alg` is not accepted) is left out; the rest of the set
//! still serves.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::jwt::{Alg, PublicKey};

/// One usable key.
#[derive(Debug)]
pub(crate) struct Jwk {
    pub(crate) kid: Option<String>,
    /// The algorithm the set pins this key to, if any.
    pub(crate) alg: Option<Alg>,
    pub(crate) key: PublicKey,
}

impl Jwk {
    /// Whether this key may check a token signed with `alg`.
    pub(crate) fn accepts(&self, alg: Alg) -> bool {
        self.alg.is_none_or(|a| a == alg) && self.key.fits(alg)
    }
}

fn bytes(key: &Value, field: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(key.get(field)?.as_str()?).ok()
}

fn parse_key(key: &Value) -> Option<Jwk> {
    if key.get("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let alg = match key.get("alg").and_then(Value::as_str) {
        Some(name) => Some(Alg::parse(name)?),
        None => None,
    };
    let public = match key.get("kty")?.as_str()? {
        "RSA" => {
            let n = bytes(key, "n")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant * 8 < 2048 {
                return None;
            }
            PublicKey::Rsa {
                n,
                e: bytes(key, "e")?,
            }
        }
        "EC" if key.get("crv")? == "P-256" => {
            let (x, y) = (bytes(key, "x")?, bytes(key, "y")?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::P256(point)
        }
        "OKP" if key.get("crv")? == "Ed25519" => {
            let x = bytes(key, "x")?;
            if x.len() != 32 {
                return None;
            }
            PublicKey::Ed25519(x)
        }
        _ => return None,
    };
    Some(Jwk {
        kid: key.get("kid").and_then(Value::as_str).map(str::to_owned),
        alg,
        key: public,
    })
}

/// The usable keys of a JWKS document.
pub(crate) fn parse_set(body: &[u8]) -> Result<Vec<Jwk>, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("the key set is not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the key set has no \"keys\" array")?;
    Ok(keys.iter().filter_map(parse_key).collect())
}

/// The key that checks a token with this `kid` and `alg`: by `kid` when the token names one,
/// else the only key of the set that fits the algorithm.
pub(crate) fn select<'k>(keys: &'k [Jwk], kid: Option<&str>, alg: Alg) -> Option<&'k Jwk> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid) && k.accepts(alg)),
        None => {
            let mut fitting = keys.iter().filter(|k| k.accepts(alg));
            let only = fitting.next()?;
            fitting.next().is_none().then_some(only)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_keys_are_left_out_and_the_rest_serve() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let short_n = URL_SAFE_NO_PAD.encode([0xffu8; 128]);
        let set = format!(
            r#"{{"keys":[
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"ed"}},
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"enc","use":"enc"}},
              {{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}},
              {{"kty":"RSA","n":"{short_n}","e":"AQAB","kid":"rsa1024"}},
              {{"kty":"EC","crv":"P-384","x":"{x}","y":"{x}","kid":"p384"}},
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"pinned","alg":"HS256"}}
            ]}}"#
        );
        let keys = parse_set(set.as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, ["ed"]);
        assert!(select(&keys, Some("ed"), Alg::EdDsa).is_some());
        assert!(select(&keys, Some("ed"), Alg::Es256).is_none());
        assert!(select(&keys, None, Alg::EdDsa).is_some());
        assert!(select(&keys, Some("hmac"), Alg::EdDsa).is_none());
        assert!(parse_set(b"{}").is_err());
    }
}
