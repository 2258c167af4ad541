//! TLS for outgoing connections (upstreams, the identity providers OAuth asks for keys, the
//! policy database): rustls with the ring provider, the roots a certificate is verified against,
//! the certificate shown in return, and the HTTP client built from them.
//!
//! Each upstream gets its own [`reqwest::Client`] (its own connection pool), so one upstream's
//! CA bundle or client certificate never applies to another. ALPN offers HTTP/2 and HTTP/1.1;
//! proxies come from `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`; a redirect from `https` to
//! `http` is refused rather than followed.

// Without the gateway, only the client of the identity providers is used.
#![cfg_attr(not(feature = "gateway"), allow(dead_code, unreachable_pub))]

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::config::{ConfigError, SslVerify, SslVerifySetting};
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use rustls_pki_types::{ServerName, UnixTime};

/// How an upstream's certificate is verified.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Verify {
    /// Against the platform's trust store, plus the PEM bundle `SSL_CERT_FILE` names when set.
    #[default]
    Platform,
    /// Against these CA certificates only (`ssl_verify: <path>`).
    Roots(Arc<[CertificateDer<'static>]>),
    /// Not at all (`ssl_verify: false`): the connection is encrypted, but anyone on the path
    /// can pose as the upstream.
    Off,
}

impl Verify {
    /// The CA certificates of the PEM file at `path`.
    ///
    /// # Errors
    ///
    /// A message naming the file when it cannot be read or holds no certificate.
    pub fn ca_bundle(path: &Path) -> Result<Self, String> {
        let certs = read_certs(path)?;
        Ok(Self::Roots(certs.into()))
    }
}

/// The certificate chain and private key shown to an upstream that asks for one (mutual TLS).
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// An identity from its certificate chain (leaf first) and private key.
    #[must_use]
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Self { chain, key }
    }

    /// The identity in two PEM files: the certificate chain and its private key (PKCS#8,
    /// PKCS#1 or SEC1).
    ///
    /// # Errors
    ///
    /// A message naming the file that cannot be read or holds no certificate or key.
    pub fn from_pem_files(certificate: &Path, key: &Path) -> Result<Self, String> {
        let chain = read_certs(certificate)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            format!(
                "{}: no PEM private key could be read ({e}); give the key of the client certificate",
                key.display()
            )
        })?;
        Ok(Self { chain, key })
    }
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The TLS settings of one upstream.
#[derive(Clone, Debug, Default)]
pub struct UpstreamTls {
    /// How its certificate is verified.
    pub verify: Verify,
    /// The certificate shown when it asks for one.
    pub identity: Option<ClientIdentity>,
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let unreadable = |e: &dyn fmt::Display| {
        format!(
            "{}: cannot read PEM certificates ({e}); give a readable PEM file",
            path.display()
        )
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The one crypto provider of every upstream connection: ring's.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// The platform's trust store, plus `SSL_CERT_FILE` (and `SSL_CERT_DIR`) when set, read once.
fn platform_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| {
        // With SSL_CERT_FILE or SSL_CERT_DIR set, this reads those instead of the platform's
        // store; the platform's directories are then added below.
        let mut certs = rustls_native_certs::load_native_certs().certs;
        let overridden = std::env::var_os("SSL_CERT_FILE").is_some()
            || std::env::var_os("SSL_CERT_DIR").is_some();
        if overridden {
            for dir in openssl_probe::candidate_cert_dirs() {
                certs.extend(rustls_native_certs::load_certs_from_paths(None, Some(dir)).certs);
            }
        }
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(certs);
        Arc::new(store)
    }))
}

/// The verification an `ssl_verify` setting at `path` asks for, its CA bundle read.
pub(crate) fn verify_setting(v: &SslVerify, path: &str) -> Result<Verify, ConfigError> {
    match v.resolve(path)? {
        SslVerifySetting::Off => Ok(Verify::Off),
        SslVerifySetting::CaBundle(file) => {
            Verify::ca_bundle(&file).map_err(|e| ConfigError::new(path, e))
        }
        SslVerifySetting::Default => Ok(Verify::Platform),
    }
}

/// A rustls client configuration that verifies as `verify` says (with `ignore_name`, the
/// chain but not the name the certificate is issued for) and shows `identity` if asked.
pub(crate) fn client_config(
    verify: &Verify,
    identity: Option<&ClientIdentity>,
    ignore_name: bool,
) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let roots = match verify {
        Verify::Platform => Some(platform_roots()),
        Verify::Roots(certs) => {
            let mut store = RootCertStore::empty();
            for cert in certs.iter() {
                store
                    .add(cert.clone())
                    .map_err(|e| format!("a CA certificate is not usable: {e}"))?;
            }
            Some(Arc::new(store))
        }
        Verify::Off => None,
    };
    let builder = match roots {
        Some(roots) if ignore_name => {
            let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots,
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| format!("TLS: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName(chain)))
        }
        Some(roots) => builder.with_root_certificates(roots),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider))),
    };
    match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| {
                format!(
                    "ssl_client_key does not fit ssl_client_certificate ({e}); give the key the certificate was issued for"
                )
            }),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The HTTP client of one upstream.
#[cfg(any(feature = "gateway", feature = "oauth", feature = "otel"))]
pub(crate) fn client(tls: &UpstreamTls) -> Result<reqwest::Client, String> {
    let mut config = client_config(&tls.verify, tls.identity.as_ref(), false)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let downgrade = attempt.url().scheme() != "https"
                && attempt.previous().iter().any(|u| u.scheme() == "https");
            if downgrade {
                attempt.error("refused a redirect from https to plain http")
            } else if attempt.previous().len() > 5 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// Checks the chain against the roots but not the name (`verify-ca`).
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (`ssl_verify: false`); the handshake's signatures are still checked,
/// so the connection is at least with the holder of the certificate it showed.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What went wrong with TLS in `error`'s chain, said so that a person can act on it; `None`
/// when the failure was not TLS's.
pub(crate) fn failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(explain(tls));
        }
        // An alert that arrives after the handshake (TLS 1.3 refuses a missing client
        // certificate only then) reaches us as the text of rustls's error.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
            && let Some(alert) = io.get_ref().and_then(|inner| {
                inner
                    .to_string()
                    .strip_prefix("received fatal alert: ")
                    .map(str::to_owned)
            })
        {
            return Some(explain_alert(&alert));
        }
        // An I/O error's `source` skips the error it wraps, where rustls's sits.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn explain(e: &rustls::Error) -> String {
    use rustls::{CertificateError as Cert, Error};
    match e {
        Error::InvalidCertificate(Cert::UnknownIssuer) => "TLS: the upstream's certificate is not signed by a trusted CA; set ssl_verify to the PEM bundle of the CA that issued it".to_owned(),
        Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "TLS: the upstream's certificate has expired".to_owned()
        }
        Error::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            "TLS: the upstream's certificate is not valid yet (check this machine's clock)".to_owned()
        }
        Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            "TLS: the upstream's certificate is not valid for the host name in its url".to_owned()
        }
        Error::InvalidCertificate(other) => {
            format!("TLS: the upstream's certificate was refused ({other:?})")
        }
        Error::AlertReceived(alert) => explain_alert(&format!("{alert:?}")),
        Error::NoApplicationProtocol => {
            "TLS: the upstream speaks neither h2 nor http/1.1 (ALPN)".to_owned()
        }
        other => format!("TLS: {other}"),
    }
}

/// An alert the upstream sent, by its name in rustls (`CertificateRequired`).
fn explain_alert(alert: &str) -> String {
    match alert {
        "CertificateRequired"
        | "HandshakeFailure"
        | "BadCertificate"
        | "UnknownCA"
        | "AccessDenied"
        | "CertificateUnknown" => format!(
            "TLS: the upstream refused the connection (alert {alert}); it may want a client certificate it trusts (ssl_client_certificate, ssl_client_key)"
        ),
        _ => format!("TLS: the upstream ended the connection (alert {alert})"),
    }
}
