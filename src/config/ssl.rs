//! `ssl_verify`, `ssl_client_certificate` and `ssl_client_key`: how the gateway checks an
//! upstream's certificate and which certificate it shows, with LiteLLM's names and meanings.
//! Only the settings live here; reading the PEM files and TLS itself are the gateway's.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::{ConfigError, resolve_env};

/// `ssl_verify` as written: `true` (the default), `false`, or the path of a PEM CA bundle used
/// instead of the default roots. A string may be `os.environ/NAME`; `"true"` and `"false"`
/// (any case) read as the booleans.
#[derive(Clone, PartialEq, Eq)]
pub struct SslVerify(Raw);

#[derive(Clone, PartialEq, Eq)]
enum Raw {
    Bool(bool),
    Text(String),
}

/// What an `ssl_verify` setting asks for, once resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslVerifySetting {
    /// Verify against the default roots: the platform's trust store plus `SSL_CERT_FILE`.
    Default,
    /// Do not verify the certificate at all.
    Off,
    /// Verify against the CA certificates in this PEM file only.
    CaBundle(PathBuf),
}

impl SslVerify {
    /// The setting, with `os.environ/NAME` read from the environment.
    ///
    /// # Errors
    ///
    /// An unset variable, or an empty value, at `path`.
    pub fn resolve(&self, path: &str) -> Result<SslVerifySetting, ConfigError> {
        let text = match &self.0 {
            Raw::Bool(true) => return Ok(SslVerifySetting::Default),
            Raw::Bool(false) => return Ok(SslVerifySetting::Off),
            Raw::Text(t) => resolve_env(t, path)?,
        };
        let text = text.trim();
        if text.eq_ignore_ascii_case("true") {
            Ok(SslVerifySetting::Default)
        } else if text.eq_ignore_ascii_case("false") {
            Ok(SslVerifySetting::Off)
        } else if text.is_empty() {
            Err(ConfigError::at(
                path,
                "empty: write true, false or the path of a PEM CA bundle",
            ))
        } else {
            Ok(SslVerifySetting::CaBundle(PathBuf::from(text)))
        }
    }
}

impl fmt::Debug for SslVerify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Raw::Bool(b) => write!(f, "SslVerify({b})"),
            Raw::Text(t) => write!(f, "SslVerify({t:?})"),
        }
    }
}

impl From<bool> for SslVerify {
    fn from(verify: bool) -> Self {
        Self(Raw::Bool(verify))
    }
}

impl<'de> Deserialize<'de> for SslVerify {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SslVerify;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or the path of a PEM CA bundle")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<SslVerify, E> {
                Ok(SslVerify(Raw::Bool(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SslVerify, E> {
                Ok(SslVerify(Raw::Text(v.to_owned())))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<SslVerifySetting, String> {
        let v: SslVerify = serde_json::from_str(json).map_err(|e| e.to_string())?;
        v.resolve("general_settings.ssl_verify")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn booleans_words_and_paths() {
        assert_eq!(read("true"), Ok(SslVerifySetting::Default));
        assert_eq!(read("false"), Ok(SslVerifySetting::Off));
        assert_eq!(read("\"False\""), Ok(SslVerifySetting::Off));
        assert_eq!(read("\"TRUE\""), Ok(SslVerifySetting::Default));
        assert_eq!(
            read("\"/etc/ssl/corp-ca.pem\""),
            Ok(SslVerifySetting::CaBundle("/etc/ssl/corp-ca.pem".into()))
        );
        assert!(read("\"\"").unwrap_err().contains("empty"));
        assert!(read("1").is_err());
        let unset = read("\"os.environ/MCP_GATEKEEPER_SURELY_UNSET_SSL\"").unwrap_err();
        assert!(unset.contains("MCP_GATEKEEPER_SURELY_UNSET_SSL"), "{unset}");
    }
}
