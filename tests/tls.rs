//! TLS to upstreams, end to end: real rmcp servers behind tokio-rustls, with a CA and
//! certificates made for each test run (rcgen), the gateway in front and rmcp's client driving
//! it. Trusted, untrusted, expired and misnamed certificates, mutual TLS, `ssl_verify: false`,
//! a legacy SSE upstream and an OAuth 2 token endpoint over TLS, and the load errors of bad
//! settings.
#![cfg(feature = "gateway")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::gateway::Gateway;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A leaf certificate for `names`, valid now unless `expired`: (certificate PEM, key PEM).
    fn leaf(&self, names: &[&str], expired: bool) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A folder of PEM files for one test, removed when dropped.
struct Files(PathBuf);

impl Files {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("gatekeeper-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn der_chain(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn der_key(pem: &str) -> rustls::pki_types::PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// The server side of TLS: its certificate, and the CA its clients' certificates must come
/// from, if it asks for one.
fn server_config(leaf: &(String, String), clients: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in der_chain(&ca.pem) {
                roots.add(c).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(der_chain(&leaf.0), der_key(&leaf.1))
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An upstream served over TLS on loopback: what it saw of its clients.
struct TlsUpstream {
    port: u16,
    /// TCP connections accepted.
    accepted: Arc<AtomicUsize>,
    /// The HTTP version of every request that got through the handshake.
    versions: Arc<Mutex<Vec<http::Version>>>,
    ct: CancellationToken,
}

impl TlsUpstream {
    /// `https://localhost:PORT{path}`.
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// `http://127.0.0.1:PORT{path}`, when served without TLS.
    fn plain_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.ct.cancel();
    }
}

async fn serve_tls(router: axum::Router, tls: Arc<rustls::ServerConfig>) -> TlsUpstream {
    serve_counting(router, Some(tls)).await
}

/// Serves `router` on loopback, over TLS when given, counting the connections it accepts.
async fn serve_counting(
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> TlsUpstream {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    let versions: Arc<Mutex<Vec<http::Version>>> = Arc::default();
    let seen = Arc::clone(&versions);
    let router = router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            seen.lock().unwrap().push(req.version());
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let ct = CancellationToken::new();
    let stop = ct.clone();
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(_) => continue,
                },
            };
            count.fetch_add(1, Ordering::SeqCst);
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let router = router.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let service = TowerToHyperService::new(router);
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let Some(acceptor) = acceptor else {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = conn => {}
                    }
                    return;
                };
                // A client that refuses our certificate ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = conn => {}
                }
            });
        }
    });
    TlsUpstream {
        port,
        accepted,
        versions,
        ct,
    }
}

/// An rmcp server (tools `ping`, `headers`) over TLS with `tls`.
async fn mcp_upstream(tls: Arc<rustls::ServerConfig>) -> (TlsUpstream, RecordingServer) {
    let server = RecordingServer::new(vec![tool("ping", &[]), tool("headers", &[])], &[], &[]);
    let ct = CancellationToken::new();
    let router = axum::Router::new()
        .nest_service("/mcp", mcp_service(server.clone(), Mode::StatefulSse, &ct));
    (serve_tls(router, tls).await, server)
}

async fn gateway(doc: &str) -> (Running, Gateway) {
    let config = Config::from_json_str(doc).unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(&config, gk).unwrap().build().unwrap();
    let router = gateway.router(gateway.gatekeeper().layer());
    (serve(router, CancellationToken::new()).await, gateway)
}

/// `/health` as the master key sees it.
async fn health(gw: &Running) -> Value {
    http_client()
        .get(gw.url("/health"))
        .header("x-litellm-api-key", "sk-admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn reason(health: &Value, server: &str) -> String {
    assert_eq!(
        health["upstreams"][server]["status"], "failing",
        "{server}: {health}"
    );
    health["upstreams"][server]["last_error"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A refusal or failure as rmcp's client reads it: an `isError` result or an MCP error, never
/// a broken client.
fn assert_failed(outcome: Result<String, String>, context: &str) -> String {
    match outcome {
        Ok(text) => panic!("{context}: the call succeeded: {text}"),
        Err(e) if e.starts_with("service error: Mcp error") || !e.starts_with("service error") => e,
        Err(e) => panic!("{context}: the client broke instead of reading a refusal: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_upstreams_work_and_untrusted_ones_fail_alone_with_a_reason() {
    let files = Files::new("trust");
    let ca = Ca::new("corp CA");
    let stranger = Ca::new("someone else's CA");
    let ca_file = files.write("ca.pem", &ca.pem);
    let (good, good_server) =
        mcp_upstream(server_config(&ca.leaf(&["localhost"], false), None)).await;
    let (unknown, unknown_server) =
        mcp_upstream(server_config(&stranger.leaf(&["localhost"], false), None)).await;
    let (misnamed, _) =
        mcp_upstream(server_config(&ca.leaf(&["elsewhere.example"], false), None)).await;
    let (expired, _) = mcp_upstream(server_config(&ca.leaf(&["localhost"], true), None)).await;
    let ca_path = ca_file.display();
    let (gw, _) = gateway(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin", "ssl_verify": "{ca_path}"}},
            "mcp_servers": {{
              "good": {{"url": "{}", "timeout": 5}},
              "unknown": {{"url": "{}", "timeout": 5}},
              "misnamed": {{"url": "{}", "timeout": 5}},
              "expired": {{"url": "{}", "timeout": 5}}
            }}}}"#,
        good.url("/mcp"),
        unknown.url("/mcp"),
        misnamed.url("/mcp"),
        expired.url("/mcp"),
    ))
    .await;
    let client = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-admin")])
        .await
        .unwrap();
    assert_eq!(
        tool_names(&client).await,
        ["good-headers", "good-ping"],
        "only the upstream whose certificate verifies is listed"
    );
    assert!(
        call(&client, "good-ping", json!({}))
            .await
            .unwrap()
            .contains("ping")
    );
    for server in ["unknown", "misnamed", "expired"] {
        assert_failed(
            call(&client, &format!("{server}-ping"), json!({})).await,
            server,
        );
    }
    // The good upstream still answers after the others failed.
    assert!(call(&client, "good-ping", json!({})).await.is_ok());
    assert_eq!(good_server.executions.names(), ["ping", "ping"]);
    assert!(unknown_server.executions.names().is_empty());

    let health = health(&gw).await;
    assert_eq!(health["upstreams"]["good"]["status"], "ok", "{health}");
    let unknown_reason = reason(&health, "unknown");
    assert!(
        unknown_reason.contains("not signed by a trusted CA")
            && unknown_reason.contains("ssl_verify"),
        "{unknown_reason}"
    );
    assert!(
        reason(&health, "misnamed").contains("not valid for the host name"),
        "{health}"
    );
    assert!(reason(&health, "expired").contains("expired"), "{health}");
    // Nothing of the key material or the CA file's content is in a reason.
    let text = health.to_string();
    assert!(!text.contains("BEGIN"), "{text}");

    // Streamed (SSE) replies came over HTTP/2, negotiated by ALPN.
    let versions = good.versions.lock().unwrap().clone();
    assert!(!versions.is_empty());
    assert!(
        versions.iter().all(|v| *v == http::Version::HTTP_2),
        "{versions:?}"
    );
}

#[tokio::test]
async fn a_server_setting_overrides_the_general_one_and_false_skips_verification() {
    let files = Files::new("override");
    let ca = Ca::new("corp CA");
    let stranger = Ca::new("self-signed elsewhere");
    let ca_file = files.write("ca.pem", &ca.pem);
    let (corp, _) = mcp_upstream(server_config(&ca.leaf(&["localhost"], false), None)).await;
    let (lab, _) = mcp_upstream(server_config(
        &stranger.leaf(&["lab.internal"], false),
        None,
    ))
    .await;
    let (gw, _) = gateway(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin", "ssl_verify": false}},
            "mcp_servers": {{
              "corp": {{"url": "{}", "ssl_verify": "{}"}},
              "lab": {{"url": "{}"}}
            }}}}"#,
        corp.url("/mcp"),
        ca_file.display(),
        lab.url("/mcp"),
    ))
    .await;
    let client = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-admin")])
        .await
        .unwrap();
    assert_eq!(
        tool_names(&client).await,
        ["corp-headers", "corp-ping", "lab-headers", "lab-ping"]
    );
    assert!(call(&client, "lab-ping", json!({})).await.is_ok());
    assert!(call(&client, "corp-ping", json!({})).await.is_ok());
}

#[tokio::test]
async fn an_upstream_that_wants_a_client_certificate_gets_one_only_when_configured() {
    let files = Files::new("mtls");
    let ca = Ca::new("corp CA");
    let clients = Ca::new("client CA");
    let ca_file = files.write("ca.pem", &ca.pem);
    let (cert, key) = clients.leaf(&["gatekeeper.client"], false);
    let cert_file = files.write("client.pem", &cert);
    let key_file = files.write("client.key", &key);
    let tls = server_config(&ca.leaf(&["localhost"], false), Some(&clients));
    let (strict, strict_server) = mcp_upstream(tls).await;
    let (gw, _) = gateway(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin", "ssl_verify": "{ca}"}},
            "mcp_servers": {{
              "with_cert": {{"url": "{url}", "ssl_client_certificate": "{cert}", "ssl_client_key": "{key}", "timeout": 5}},
              "without": {{"url": "{url}", "timeout": 5}}
            }}}}"#,
        ca = ca_file.display(),
        url = strict.url("/mcp"),
        cert = cert_file.display(),
        key = key_file.display(),
    ))
    .await;
    let client = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-admin")])
        .await
        .unwrap();
    assert_eq!(
        tool_names(&client).await,
        ["with_cert-headers", "with_cert-ping"]
    );
    assert!(call(&client, "with_cert-ping", json!({})).await.is_ok());
    assert_failed(call(&client, "without-ping", json!({})).await, "without");
    assert_eq!(strict_server.executions.names(), ["ping"]);
    let reason = reason(&health(&gw).await, "without");
    assert!(reason.contains("client certificate"), "{reason}");
}

#[tokio::test]
async fn a_legacy_sse_upstream_and_a_token_endpoint_over_tls() {
    use axum::extract::State;
    let files = Files::new("legacy");
    let ca = Ca::new("corp CA");
    let ca_file = files.write("ca.pem", &ca.pem);
    let tls = server_config(&ca.leaf(&["localhost"], false), None);
    let (router, calls) = legacy_sse_router();
    let legacy = serve_tls(router, Arc::clone(&tls)).await;

    let fetched = Arc::new(AtomicUsize::new(0));
    async fn token(State(n): State<Arc<AtomicUsize>>) -> axum::Json<Value> {
        n.fetch_add(1, Ordering::SeqCst);
        axum::Json(json!({"access_token": "tls-token", "token_type": "Bearer", "expires_in": 3600}))
    }
    let auth = serve_tls(
        axum::Router::new()
            .route("/token", axum::routing::post(token))
            .with_state(Arc::clone(&fetched)),
        Arc::clone(&tls),
    )
    .await;
    let (api, _) = mcp_upstream(tls).await;
    let (gw, _) = gateway(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin", "ssl_verify": "{ca}"}},
            "mcp_servers": {{
              "old": {{"url": "{sse}", "transport": "sse"}},
              "api": {{"url": "{api}", "auth_type": "oauth2", "client_id": "id", "client_secret": "s",
                       "token_url": "{token}"}}
            }}}}"#,
        ca = ca_file.display(),
        sse = legacy.url("/sse"),
        api = api.url("/mcp"),
        token = auth.url("/token"),
    ))
    .await;
    let client = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-admin")])
        .await
        .unwrap();
    assert_eq!(
        tool_names(&client).await,
        ["api-headers", "api-ping", "old-legacy_echo"]
    );
    let said = call(&client, "old-legacy_echo", json!({"message": "hi"}))
        .await
        .unwrap();
    assert!(said.contains("legacy says"), "{said}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let headers: Value =
        serde_json::from_str(&call(&client, "api-headers", json!({})).await.unwrap()).unwrap();
    assert_eq!(headers["authorization"], "Bearer tls-token");
    assert_eq!(fetched.load(Ordering::SeqCst), 1);
}

fn load(doc: &str) -> Result<(), String> {
    let config = Config::from_json_str(doc).map_err(|e| e.to_string())?;
    let gk = Gatekeeper::new(config.policy().map_err(|e| e.to_string())?);
    Gateway::from_config(&config, gk)
        .map_err(|e| e.to_string())?
        .build()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn server(fields: &str) -> String {
    format!(r#"{{"mcp_servers": {{"remote": {{"url": "https://localhost:1/mcp"{fields}}}}}}}"#)
}

#[test]
fn bad_tls_settings_are_load_errors_that_name_the_file_and_the_fix() {
    let files = Files::new("errors");
    let ca = Ca::new("corp CA");
    let (cert, key) = ca.leaf(&["client"], false);
    let (_, other_key) = ca.leaf(&["other"], false);
    let cert_file = files.write("client.pem", &cert);
    let key_file = files.write("client.key", &key);
    let other_key_file = files.write("other.key", &other_key);
    let garbage = files.write("garbage.pem", "not a certificate\n");
    let missing = files.0.join("missing.pem");
    let p = |path: &Path| path.display().to_string();

    let e = load(&server(&format!(r#", "ssl_verify": "{}""#, p(&missing)))).unwrap_err();
    assert!(
        e.contains("mcp_servers.remote.ssl_verify") && e.contains("missing.pem"),
        "{e}"
    );
    let e = load(&server(&format!(r#", "ssl_verify": "{}""#, p(&garbage)))).unwrap_err();
    assert!(
        e.contains("garbage.pem") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = load(&format!(
        r#"{{"general_settings": {{"ssl_verify": "{}"}}, "mcp_servers": {{}}}}"#,
        p(&missing)
    ))
    .unwrap_err();
    assert!(
        e.contains("general_settings.ssl_verify") && e.contains("missing.pem"),
        "{e}"
    );
    let e = load(&server(&format!(
        r#", "ssl_client_certificate": "{}""#,
        p(&cert_file)
    )))
    .unwrap_err();
    assert!(e.contains("ssl_client_key") && e.contains("both"), "{e}");
    let e = load(&server(&format!(
        r#", "ssl_client_key": "{}""#,
        p(&key_file)
    )))
    .unwrap_err();
    assert!(
        e.contains("ssl_client_certificate") && e.contains("both"),
        "{e}"
    );
    let e = load(&server(&format!(
        r#", "ssl_client_certificate": "{}", "ssl_client_key": "{}""#,
        p(&cert_file),
        p(&garbage)
    )))
    .unwrap_err();
    assert!(
        e.contains("garbage.pem") && e.contains("private key"),
        "{e}"
    );
    let e = load(&server(&format!(
        r#", "ssl_client_certificate": "{}", "ssl_client_key": "{}""#,
        p(&cert_file),
        p(&other_key_file)
    )))
    .unwrap_err();
    assert!(e.contains("does not fit"), "{e}");
    assert!(
        !e.contains("PRIVATE KEY"),
        "no key material in an error: {e}"
    );
    let e = load(&server(
        r#", "ssl_verify": "os.environ/GATEKEEPER_TLS_TEST_UNSET""#,
    ))
    .unwrap_err();
    assert!(e.contains("GATEKEEPER_TLS_TEST_UNSET"), "{e}");
    // A good pair loads.
    load(&server(&format!(
        r#", "ssl_client_certificate": "{}", "ssl_client_key": "{}""#,
        p(&cert_file),
        p(&key_file)
    )))
    .unwrap();
}

/// Sequential calls and lists through the gateway reuse the upstream's connections: one TLS
/// handshake per pooled connection, not one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_calls_reuse_the_upstreams_connections() {
    let files = Files::new("reuse");
    let ca = Ca::new("corp CA");
    let ca_file = files.write("ca.pem", &ca.pem);
    let (up, server) = mcp_upstream(server_config(&ca.leaf(&["localhost"], false), None)).await;
    let (gw, _) = gateway(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin", "ssl_verify": "{}"}},
             "mcp_servers": {{"up": {{"url": "{}"}}}}}}"#,
        ca_file.display(),
        up.url("/mcp"),
    ))
    .await;
    let client = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-admin")])
        .await
        .unwrap();
    for _ in 0..150 {
        call(&client, "up-ping", json!({})).await.unwrap();
        assert_eq!(tool_names(&client).await.len(), 2);
    }
    assert_eq!(server.executions.names().len(), 150);
    let accepted = up.accepted.load(Ordering::SeqCst);
    assert!(
        accepted <= 2,
        "{accepted} connections accepted for 300 requests"
    );
}

/// The same over plain HTTP/1.1, where a reply body left unread would cost a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_calls_reuse_plain_http_connections() {
    let server = RecordingServer::new(vec![tool("ping", &[]), tool("headers", &[])], &[], &[]);
    let ct = CancellationToken::new();
    let router = axum::Router::new()
        .nest_service("/mcp", mcp_service(server.clone(), Mode::StatefulSse, &ct));
    let up = serve_counting(router, None).await;
    let (gw, _) = gateway(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin"}},
             "mcp_servers": {{"up": {{"url": "{}"}}}}}}"#,
        up.plain_url("/mcp"),
    ))
    .await;
    let client = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-admin")])
        .await
        .unwrap();
    for _ in 0..150 {
        call(&client, "up-ping", json!({})).await.unwrap();
        assert_eq!(tool_names(&client).await.len(), 2);
    }
    assert_eq!(server.executions.names().len(), 150);
    let accepted = up.accepted.load(Ordering::SeqCst);
    assert!(
        accepted <= 3,
        "{accepted} connections accepted for 300 requests"
    );
    assert!(
        up.versions
            .lock()
            .unwrap()
            .iter()
            .all(|v| *v == http::Version::HTTP_11)
    );
}

/// The example gateway serves TLS itself with `--tls-cert`/`--tls-key` (HTTP/2 and HTTP/1.1 by
/// ALPN), and warns at start about each upstream whose certificate it does not verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_gateway_serves_tls_and_warns_of_unverified_upstreams() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join(format!("gateway{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "cargo test builds the example gateway: {}",
        bin.display()
    );
    let files = Files::new("serve");
    let ca = Ca::new("gateway CA");
    let (cert, key) = ca.leaf(&["localhost"], false);
    let cert_file = files.write("gateway.pem", &cert);
    let key_file = files.write("gateway.key", &key);
    let stranger = Ca::new("lab CA");
    let (lab, _) = mcp_upstream(server_config(
        &stranger.leaf(&["lab.internal"], false),
        None,
    ))
    .await;
    let config = files.write(
        "gateway.json",
        &format!(
            r#"{{"general_settings": {{"master_key": "sk-admin"}},
                "mcp_servers": {{"lab": {{"url": "{}", "ssl_verify": false}}}}}}"#,
            lab.url("/mcp")
        ),
    );
    let mut child = tokio::process::Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["--bind", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert_file)
        .arg("--tls-key")
        .arg(&key_file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), stdout.next_line())
        .await
        .expect("the gateway starts")
        .unwrap()
        .unwrap();
    assert!(
        line.contains("https://127.0.0.1:") && line.contains("TLS"),
        "{line}"
    );
    let port: u16 = line
        .split("https://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .parse()
        .unwrap();

    // A client that trusts the gateway's CA.
    let mut roots = rustls::RootCertStore::empty();
    for c in der_chain(&ca.pem) {
        roots.add(c).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), http::Version::HTTP_2);
    {
        use rmcp::ServiceExt;
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        let mut headers = std::collections::HashMap::new();
        headers.insert(
            http::HeaderName::from_static("x-litellm-api-key"),
            http::HeaderValue::from_static("sk-admin"),
        );
        let config = StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"))
            .custom_headers(headers);
        let client = ()
            .serve(StreamableHttpClientTransport::with_client(
                http.clone(),
                config,
            ))
            .await
            .unwrap();
        assert_eq!(tool_names(&client).await, ["lab-headers", "lab-ping"]);
        assert!(call(&client, "lab-ping", json!({})).await.is_ok());
    }
    // Plain HTTP on the TLS port gets nowhere.
    assert!(
        http_client()
            .get(format!("http://127.0.0.1:{port}/health"))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .map_or(true, |r| !r.status().is_success())
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(
        stderr
            .matches("ssl_verify is false for upstream lab")
            .count(),
        1,
        "{stderr}"
    );
}
