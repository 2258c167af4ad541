//! TLS to upstreams, end to end: real rmcp servers behind tokio-rustls, with a CA and
//! certificates made for each test run (rcgen), the gateway in front and rmcp's client driving
//! it. Trusted, untrusted, expired and misnamed certificates, mutual TLS, `ssl_verify: false`,
//! a legacy SSE upstream and an OAuth 2 token endpoint over TLS, and the load errors of bad
//! settings.
#![cfg(feature = "gateway")]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::tls::*;
use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::gateway::Gateway;
use serde_json::{Value, json};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

/// `/health` as the master key sees it.
async fn health(gw: &Running) -> Value {
    health_as(gw, Some("sk-admin")).await
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
    let (gw, _) = gateway_from_json(&format!(
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
    let (gw, _) = gateway_from_json(&format!(
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
    let (gw, _) = gateway_from_json(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin", "ssl_verify": "{ca}"}},
            "mcp_servers": {{
              "with_cert": {{"url": "{url}", "ssl_client_certificate": "{cert}", "ssl_client_key": "{key}", "timeout": 5}},
              "posted": {{"url": "{url}", "protocol_version": "2025-11-25", "ssl_client_certificate": "{cert}", "ssl_client_key": "{key}", "timeout": 5}},
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
    // "posted" is spoken to with the handshake: its calls and lists are posted by the
    // gateway's own client, which shows the certificate too.
    let mut names = tool_names(&client).await;
    names.sort();
    assert_eq!(
        names,
        [
            "posted-headers",
            "posted-ping",
            "with_cert-headers",
            "with_cert-ping"
        ]
    );
    assert!(call(&client, "with_cert-ping", json!({})).await.is_ok());
    assert!(call(&client, "posted-ping", json!({})).await.is_ok());
    assert_failed(call(&client, "without-ping", json!({})).await, "without");
    assert_eq!(strict_server.executions.names(), ["ping", "ping"]);
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
    let (gw, _) = gateway_from_json(&format!(
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
    let pair = |cert: &Path, key: &Path| {
        server(&format!(
            r#", "ssl_client_certificate": "{}", "ssl_client_key": "{}""#,
            cert.display(),
            key.display()
        ))
    };
    let verify = |path: &Path| server(&format!(r#", "ssl_verify": "{}""#, path.display()));
    // (config, what the error must say)
    let cases: Vec<(String, &[&str])> = vec![
        (
            verify(&missing),
            &["at mcp_servers.remote.ssl_verify", "missing.pem"],
        ),
        (verify(&garbage), &["garbage.pem", "no PEM certificate"]),
        (
            format!(
                r#"{{"general_settings": {{"ssl_verify": "{}"}}, "mcp_servers": {{}}}}"#,
                missing.display()
            ),
            &["general_settings.ssl_verify", "missing.pem"],
        ),
        (
            server(&format!(
                r#", "ssl_client_certificate": "{}""#,
                cert_file.display()
            )),
            &["ssl_client_key", "both"],
        ),
        (
            server(&format!(r#", "ssl_client_key": "{}""#, key_file.display())),
            &["ssl_client_certificate", "both"],
        ),
        (pair(&cert_file, &garbage), &["garbage.pem", "private key"]),
        (pair(&cert_file, &other_key_file), &["does not fit"]),
        (
            server(r#", "ssl_verify": "os.environ/GATEKEEPER_TLS_TEST_UNSET""#),
            &["GATEKEEPER_TLS_TEST_UNSET"],
        ),
    ];
    for (config, says) in cases {
        let e = load(&config).unwrap_err();
        for part in says {
            assert!(e.contains(part), "{config}: {e}");
        }
        let material = key.lines().nth(1).unwrap();
        assert!(
            !e.contains("PRIVATE KEY") && !e.contains(material),
            "no key material: {e}"
        );
    }
    // A good pair loads.
    load(&pair(&cert_file, &key_file)).unwrap();
}

/// 150 calls and 150 lists, one after another, through a gateway to `upstream` (with the
/// `ssl_verify` given, if any): the connections the upstream accepted meanwhile.
async fn connections_for_300_requests(
    upstream: &str,
    ssl_verify: Option<&Path>,
    counted: &TlsUpstream,
    server: &RecordingServer,
) -> usize {
    connections_for_300_requests_on(upstream, ssl_verify, counted, server, None).await
}

/// [`connections_for_300_requests`] with the upstream spoken to on `protocol`, if given.
async fn connections_for_300_requests_on(
    upstream: &str,
    ssl_verify: Option<&Path>,
    counted: &TlsUpstream,
    server: &RecordingServer,
    protocol: Option<&str>,
) -> usize {
    let verify = ssl_verify.map_or(String::new(), |ca| {
        format!(r#", "ssl_verify": "{}""#, ca.display())
    });
    let protocol = protocol.map_or(String::new(), |p| format!(r#", "protocol_version": "{p}""#));
    let (gw, _) = gateway_from_json(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin"{verify}}},
             "mcp_servers": {{"up": {{"url": "{upstream}"{protocol}}}}}}}"#
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
    counted.accepted.load(Ordering::SeqCst)
}

/// Sequential calls and lists through the gateway reuse the upstream's connections: one TLS
/// handshake per pooled connection, not one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_calls_reuse_the_upstreams_connections() {
    let files = Files::new("reuse");
    let ca = Ca::new("corp CA");
    let ca_file = files.write("ca.pem", &ca.pem);
    let (up, server) = mcp_upstream(server_config(&ca.leaf(&["localhost"], false), None)).await;
    let accepted =
        connections_for_300_requests(&up.url("/mcp"), Some(&ca_file), &up, &server).await;
    assert!(
        accepted <= 2,
        "{accepted} connections accepted for 300 requests"
    );
}

/// The same on the handshake, where the gateway posts calls and lists on the session itself:
/// its own client trusts the same CA, speaks HTTP/2 by ALPN and keeps its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_calls_reuse_their_connection_over_http2() {
    let files = Files::new("reuse-posted");
    let ca = Ca::new("corp CA");
    let ca_file = files.write("ca.pem", &ca.pem);
    let (up, server) = mcp_upstream(server_config(&ca.leaf(&["localhost"], false), None)).await;
    let accepted = connections_for_300_requests_on(
        &up.url("/mcp"),
        Some(&ca_file),
        &up,
        &server,
        Some("2025-11-25"),
    )
    .await;
    // One for rmcp's session, one for the posts.
    assert!(
        accepted <= 2,
        "{accepted} connections accepted for 300 requests"
    );
    let versions = up.versions.lock().unwrap().clone();
    assert!(
        !versions.is_empty() && versions.iter().all(|v| *v == http::Version::HTTP_2),
        "{versions:?}"
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
    let accepted = connections_for_300_requests(&up.plain_url("/mcp"), None, &up, &server).await;
    assert!(
        accepted <= 3,
        "{accepted} connections accepted for 300 requests"
    );
    let versions = up.versions.lock().unwrap().clone();
    assert!(
        versions.iter().all(|v| *v == http::Version::HTTP_11),
        "{versions:?}"
    );
}

/// The example gateway serves TLS itself with `--tls-cert`/`--tls-key` (HTTP/2 and HTTP/1.1 by
/// ALPN), and warns at start about each upstream whose certificate it does not verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_gateway_serves_tls_and_warns_of_unverified_upstreams() {
    use tokio::io::AsyncReadExt;
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
    let (mut child, line) = example_gateway(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--bind".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--tls-cert".as_ref(),
            cert_file.as_os_str(),
            "--tls-key".as_ref(),
            key_file.as_os_str(),
        ],
        &[],
    )
    .await;
    assert!(
        line.contains("https://127.0.0.1:") && line.contains("TLS"),
        "{line}"
    );
    let port = port_in(&line);

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

/// An `https` upstream that redirects to plain `http` is not followed there: the gateway never
/// falls back to plaintext.
#[tokio::test]
async fn a_redirect_from_https_to_plain_http_is_refused() {
    let files = Files::new("redirect");
    let ca = Ca::new("corp CA");
    let ca_file = files.write("ca.pem", &ca.pem);
    // The plain upstream the redirect points at, counting what reaches it.
    let plain = RecordingServer::new(vec![tool("ping", &[])], &[], &[]);
    let ct = CancellationToken::new();
    let plain_up = serve_counting(
        axum::Router::new()
            .nest_service("/mcp", mcp_service(plain.clone(), Mode::StatefulSse, &ct)),
        None,
    )
    .await;
    let target = plain_up.plain_url("/mcp");
    let redirecting = serve_tls(
        axum::Router::new().fallback(move || {
            let target = target.clone();
            async move {
                (
                    axum::http::StatusCode::TEMPORARY_REDIRECT,
                    [(axum::http::header::LOCATION, target)],
                )
            }
        }),
        server_config(&ca.leaf(&["localhost"], false), None),
    )
    .await;
    let (gw, _) = gateway_from_json(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin", "ssl_verify": "{}"}},
             "mcp_servers": {{"moved": {{"url": "{}", "timeout": 5}}}}}}"#,
        ca_file.display(),
        redirecting.url("/mcp"),
    ))
    .await;
    let client = connect(&gw.url("/mcp"), &[("x-litellm-api-key", "sk-admin")])
        .await
        .unwrap();
    assert!(tool_names(&client).await.is_empty());
    assert_failed(call(&client, "moved-ping", json!({})).await, "moved");
    assert!(
        redirecting.accepted.load(Ordering::SeqCst) >= 1,
        "the https upstream was asked"
    );
    assert_eq!(
        plain_up.accepted.load(Ordering::SeqCst),
        0,
        "nothing followed the redirect to plain http"
    );
    assert!(plain.executions.names().is_empty());
}
