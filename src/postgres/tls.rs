//! TLS to the database with libpq's meanings of `sslmode` and `sslrootcert`, on rustls.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (the default) | when the server offers it | checked as for `require` |
//! | `require` | always | not checked, unless `sslrootcert` is given: then as `verify-ca` |
//! | `verify-ca` | always | signed by `sslrootcert` (else the platform's roots) |
//! | `verify-full` | always | as `verify-ca`, and issued for the host connected to |
//!
//! tokio-postgres reads neither `verify-ca`, `verify-full` nor `sslrootcert`: they are taken out
//! of the URL here and the rest is given to it.

use std::path::PathBuf;

use tokio_postgres::config::SslMode;

use super::DbError;
use crate::tls::Verify;

/// `sslmode`, as libpq reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A URL with `sslmode` and `sslrootcert` taken out, and what they said.
#[derive(Debug)]
pub(crate) struct Split {
    pub(crate) rest: String,
    pub(crate) mode: Mode,
    pub(crate) root_cert: Option<PathBuf>,
}

fn mode_of(value: &str) -> Result<Mode, DbError> {
    Ok(match value {
        "disable" => Mode::Disable,
        "allow" | "prefer" => Mode::Prefer,
        "require" => Mode::Require,
        "verify-ca" => Mode::VerifyCa,
        "verify-full" => Mode::VerifyFull,
        _ => {
            return Err(DbError::new(
                "reading the database URL",
                "sslmode must be disable, allow, prefer, require, verify-ca or verify-full",
            ));
        }
    })
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://…?sslmode=…`) or key=value
/// string (`host=… sslmode=…`).
pub(crate) fn split(url: &str) -> Result<Split, DbError> {
    let mut mode = Mode::Prefer;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, DbError> {
        match key {
            "sslmode" => mode = mode_of(value)?,
            "sslrootcert" => root_cert = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.contains("://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(key, &percent_decode(value))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key.trim(), value.trim_matches('\''))? {
                kept.push(pair);
            }
        }
        kept.join(" ")
    };
    Ok(Split {
        rest,
        mode,
        root_cert,
    })
}

/// `%XX` escapes of a URL query value.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Mode {
    /// What tokio-postgres is told.
    pub(crate) fn ssl_mode(self) -> SslMode {
        match self {
            Self::Disable => SslMode::Disable,
            Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }
}

/// The connector for `split`'s settings.
pub(crate) fn connector(
    split: &Split,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, DbError> {
    let verify = match &split.root_cert {
        Some(path) => {
            Verify::ca_bundle(path).map_err(|e| DbError::new("reading sslrootcert", e))?
        }
        None => Verify::Platform,
    };
    let (verify, ignore_name) = match (split.mode, &split.root_cert) {
        (Mode::VerifyFull, _) => (verify, false),
        (Mode::VerifyCa, _) | (Mode::Require | Mode::Prefer, Some(_)) => (verify, true),
        (Mode::Require | Mode::Prefer, None) | (Mode::Disable, _) => (Verify::Off, false),
    };
    let mut config = crate::tls::client_config(&verify, None, ignore_name)
        .map_err(|e| DbError::new("setting up TLS to the database", e))?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_settings_are_taken_out_of_both_forms() {
        let s = split("postgres://u:p@db:5432/x?sslmode=verify-full&application_name=a&sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert_eq!(s.mode, Mode::VerifyFull);
        assert_eq!(s.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(s.rest, "postgres://u:p@db:5432/x?application_name=a");
        let s = split("host=db dbname=x sslmode=verify-ca sslrootcert=/ca.pem").unwrap();
        assert_eq!(
            (s.mode, s.rest.as_str()),
            (Mode::VerifyCa, "host=db dbname=x")
        );
        let s = split("postgres://db/x").unwrap();
        assert_eq!(
            (s.mode, s.root_cert, s.rest.as_str()),
            (Mode::Prefer, None, "postgres://db/x")
        );
        assert!(split("postgres://db/x?sslmode=sometimes").is_err());
    }
}
