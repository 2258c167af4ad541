//! The gateway as an OAuth 2.1 resource server: tokens minted here with keys generated at test
//! time, an authorization server's metadata and key set served on loopback (which can be taken
//! down and whose keys can be rotated), real rmcp clients and upstreams.
#![cfg(all(feature = "gateway", feature = "oauth"))]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::audit::{Auditor, JsonlSink};
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::gateway::Gateway;
use mcp_gatekeeper::identity::IdentityLayer;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const RESOURCE: &str = "http://localhost:4000/mcp";

/// A signing key of the test authorization server.
enum Signer {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    /// RS256 (`pss: false`) or PS256, with the modulus and exponent for the key set.
    Rsa {
        pair: signature::RsaKeyPair,
        n: Vec<u8>,
        e: Vec<u8>,
        pss: bool,
    },
}

struct Key {
    kid: String,
    signer: Signer,
}

impl Key {
    fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        Self {
            kid: kid.into(),
            signer: Signer::Es256(pair),
        }
    }

    fn eddsa(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Self {
            kid: kid.into(),
            signer: Signer::EdDsa(pair),
        }
    }

    /// A 2048-bit RSA key generated now, signing with RS256 or (`pss`) PS256.
    fn rsa(kid: &str, pss: bool) -> Self {
        use rsa::pkcs8::EncodePrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let der = private.to_pkcs8_der().unwrap();
        Self {
            kid: kid.into(),
            signer: Signer::Rsa {
                pair: signature::RsaKeyPair::from_pkcs8(der.as_bytes()).unwrap(),
                n: private.n().to_bytes_be(),
                e: private.e().to_bytes_be(),
                pss,
            },
        }
    }

    fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Rsa { n, e, .. } => {
                json!({"kty": "RSA", "kid": self.kid, "use": "sig",
                       "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)})
            }
            Signer::Es256(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
                       "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])})
            }
            Signer::EdDsa(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid,
                       "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())})
            }
        }
    }

    fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Es256(_) => "ES256",
            Signer::EdDsa(_) => "EdDSA",
            Signer::Rsa { pss: false, .. } => "RS256",
            Signer::Rsa { pss: true, .. } => "PS256",
        }
    }

    /// A compact JWS of `claims` with this key, under `header` fields besides `alg` and `kid`.
    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg(), "kid": self.kid, "typ": "at+jwt"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match &self.signer {
            Signer::Es256(pair) => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            Signer::EdDsa(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
            Signer::Rsa { pair, pss, .. } => {
                let padding: &'static dyn signature::RsaEncoding = if *pss {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut out)
                    .unwrap();
                out
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// The test authorization server: RFC 8414 metadata, a key set, an introspection endpoint.
#[derive(Clone)]
struct Idp {
    keys: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
    jwks_hits: Arc<AtomicUsize>,
    discoveries: Arc<AtomicUsize>,
    introspections: Arc<AtomicUsize>,
    issuer: Arc<Mutex<String>>,
}

async fn metadata(State(idp): State<Idp>) -> axum::response::Response {
    idp.discoveries.fetch_add(1, Ordering::SeqCst);
    if idp.down.load(Ordering::SeqCst) {
        return http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let issuer = idp.issuer.lock().unwrap().clone();
    axum::Json(
        json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
        "introspection_endpoint": format!("{issuer}/introspect")}),
    )
    .into_response()
}

async fn jwks(State(idp): State<Idp>) -> axum::response::Response {
    idp.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if idp.down.load(Ordering::SeqCst) {
        return http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(json!({"keys": *idp.keys.lock().unwrap()})).into_response()
}

async fn introspect(
    State(idp): State<Idp>,
    headers: http::HeaderMap,
    body: String,
) -> axum::response::Response {
    idp.introspections.fetch_add(1, Ordering::SeqCst);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("gateway:s3cret")
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return http::StatusCode::UNAUTHORIZED.into_response();
    }
    let issuer = idp.issuer.lock().unwrap().clone();
    let answer = if body.contains("token=opaque-good") {
        json!({"active": true, "iss": issuer, "sub": "svc-1", "aud": RESOURCE, "groups": ["eng"],
               "email": "svc@example.com", "scope": "mcp mcp:wiki", "exp": now() + 600})
    } else {
        json!({"active": false})
    };
    axum::Json(answer).into_response()
}

impl Idp {
    async fn start(keys: &[&Key]) -> (Running, Self) {
        let idp = Idp {
            keys: Arc::new(Mutex::new(keys.iter().map(|k| k.jwk()).collect())),
            down: Arc::default(),
            jwks_hits: Arc::default(),
            discoveries: Arc::default(),
            introspections: Arc::default(),
            issuer: Arc::default(),
        };
        let router = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(metadata),
            )
            .route("/jwks", axum::routing::get(jwks))
            .route("/introspect", axum::routing::post(introspect))
            .with_state(idp.clone());
        let running = serve(router, CancellationToken::new()).await;
        *idp.issuer.lock().unwrap() = running.url("");
        (running, idp)
    }

    fn issuer(&self) -> String {
        self.issuer.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a good token: team eng, scopes `mcp mcp:github`, for `/mcp`.
fn claims(idp: &Idp) -> Value {
    json!({"iss": idp.issuer(), "sub": "user-1", "aud": [RESOURCE], "exp": now() + 600,
           "iat": now(), "groups": ["eng"], "email": "ada@example.com", "scope": "mcp mcp:github"})
}

fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

fn without(mut claims: Value, field: &str) -> Value {
    claims.as_object_mut().unwrap().remove(field);
    claims
}

struct Setup {
    gw: Running,
    _upstreams: (Running, Running),
    github: RecordingServer,
    wiki: RecordingServer,
    audit: Auditor,
    audit_log: std::path::PathBuf,
}

impl Setup {
    /// Every audit event so far, as written; no token (nor any part of one) may be in it.
    fn audit_without(&self, tokens: &[&str]) -> String {
        assert!(self.audit.flush(std::time::Duration::from_secs(5)));
        let log = std::fs::read_to_string(&self.audit_log).unwrap();
        for token in tokens {
            // Any of its three parts (the claims part of a token names its subject and team).
            let parts = token.split('.').filter(|p| p.len() > 8);
            for part in std::iter::once(*token).chain(parts) {
                assert!(!log.contains(part), "a token leaked into the audit log");
            }
        }
        log
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.audit_log);
    }
}

static LOGS: AtomicUsize = AtomicUsize::new(0);

/// A gateway in front of `github` and `wiki`, accepting tokens of `idp` and the key `sk-alice`.
async fn gateway(idp: &Idp, extra: Value) -> Setup {
    let github = RecordingServer::new(
        vec![
            tool("create_issue", &["title"]),
            tool("list_issues", &[]),
            tool("headers", &[]),
        ],
        &[],
        &[],
    );
    let wiki = RecordingServer::new(vec![tool("search", &["q"])], &[], &[]);
    let ct = CancellationToken::new();
    let up_github = serve(
        axum::Router::new()
            .nest_service("/mcp", mcp_service(github.clone(), Mode::StatefulSse, &ct)),
        ct.clone(),
    )
    .await;
    let up_wiki = serve(
        axum::Router::new().nest_service("/mcp", mcp_service(wiki.clone(), Mode::StatefulSse, &ct)),
        ct,
    )
    .await;
    let mut oauth = json!({
        "resource": RESOURCE,
        "issuers": [{"issuer": idp.issuer(),
                     "claims": {"team_id": "groups[0]", "end_user_id": "email"},
                     "scopes": {"mcp:github": {"mcp_servers": ["github"]},
                                "mcp:wiki": {"mcp_servers": ["wiki"]}}}],
        "required_scopes": ["mcp"],
        "jwks_refetch_interval_seconds": 3600
    });
    for (k, v) in extra.as_object().unwrap() {
        if k == "issuer" {
            for (ik, iv) in v.as_object().unwrap() {
                oauth["issuers"][0][ik] = iv.clone();
            }
        } else {
            oauth[k] = v.clone();
        }
    }
    let doc = json!({
        "general_settings": {"oauth": oauth},
        "mcp_servers": {
            "github": {"url": up_github.url("/mcp"), "extra_headers": ["authorization", "x-litellm-api-key"]},
            "wiki": {"url": up_wiki.url("/mcp")}
        },
        "teams": [{"team_id": "eng", "object_permission": {"mcp_tool_permissions": {"github": ["list_issues", "headers"]}}}],
        "keys": [{"key": "sk-alice", "key_alias": "alice", "object_permission": {"mcp_servers": ["wiki"]}}]
    });
    let config = Config::from_json_str(&doc.to_string()).unwrap();
    let audit_log = std::env::temp_dir().join(format!(
        "gk-oauth-audit-{}-{}.jsonl",
        std::process::id(),
        LOGS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&audit_log);
    let audit = Auditor::new(vec![Arc::new(JsonlSink::open(&audit_log).unwrap())], 10_000);
    let gk = Gatekeeper::new(config.policy().unwrap()).with_audit(audit.clone());
    let gateway = Gateway::from_config(&config, gk).unwrap().build().unwrap();
    let oauth = gateway.oauth().expect("oauth configured").clone();
    let layer = gateway
        .gatekeeper()
        .layer()
        .identity(IdentityLayer::with_resolver(
            gateway.gatekeeper().clone(),
            oauth,
        ));
    let gw = serve(gateway.router(layer), CancellationToken::new()).await;
    Setup {
        gw,
        _upstreams: (up_github, up_wiki),
        github,
        wiki,
        audit,
        audit_log,
    }
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

async fn connect_with(url: &str, header: (&'static str, String)) -> Client {
    connect(url, &[(header.0, header.1.as_str())])
        .await
        .unwrap()
}

/// A `tools/call` of `github-list_issues` as a 2026-07-28 client sends it (no session), with
/// `authorization` (if any): status, `WWW-Authenticate`, body.
async fn raw_call(url: &str, authorization: Option<&str>) -> (u16, String, String) {
    let mut request = http_client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "github-list_issues");
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "oauth-test", "version": "0"},
    });
    let response = request
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "github-list_issues", "arguments": {}, "_meta": meta}}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, challenge, response.text().await.unwrap())
}

#[tokio::test]
async fn a_valid_token_lists_and_calls_exactly_its_principals_tools() {
    let key = Key::es256("k1");
    let (_idp_server, idp) = Idp::start(&[&key]).await;
    let s = gateway(&idp, json!({})).await;
    let token = key.sign(&claims(&idp));
    let client = connect_with(&s.gw.url("/mcp"), bearer(&token)).await;
    // Scope mcp:github grants github; team eng narrows it to two tools; wiki is not granted.
    assert_eq!(
        tool_names(&client).await,
        ["github-headers", "github-list_issues"]
    );
    assert_eq!(
        call(&client, "github-list_issues", json!({}))
            .await
            .map(|_| ()),
        Ok(())
    );
    let refused = call(&client, "github-create_issue", json!({"title": "x"})).await;
    assert!(
        matches!(&refused, Err(t) if !t.starts_with("service error")),
        "{refused:?}"
    );
    assert_eq!(s.github.executions.names(), ["list_issues"]);
    // The token never reaches the upstream, although its extra_headers name Authorization.
    let seen = call(&client, "github-headers", json!({})).await.unwrap();
    let seen: Value = serde_json::from_str(&seen).unwrap();
    assert!(seen.get("authorization").is_none(), "{seen}");
    assert!(!seen.to_string().contains(&token[..20]));
    client.cancel().await.unwrap();

    // A key, side by side, in either header: its own grant (wiki only).
    for header in [
        ("x-litellm-api-key", "sk-alice".to_owned()),
        bearer("sk-alice"),
    ] {
        let client = connect_with(&s.gw.url("/mcp"), header).await;
        assert_eq!(tool_names(&client).await, ["wiki-search"]);
        assert_eq!(
            call(&client, "wiki-search", json!({"q": "a"}))
                .await
                .map(|_| ()),
            Ok(())
        );
        client.cancel().await.unwrap();
    }
    assert_eq!(s.wiki.executions.names(), ["search", "search"]);
    // A scoped path narrows a token's grant as it narrows a key's.
    let client = connect_with(&s.gw.url("/github/mcp"), bearer(&token)).await;
    assert_eq!(
        tool_names(&client).await,
        ["github-headers", "github-list_issues"]
    );
    client.cancel().await.unwrap();
    // The audit trail names the token's caller by ids, never the token or the key.
    let log = s.audit_without(&[&token, "sk-alice"]);
    assert!(
        log.contains(r#""event":"call","outcome":"allowed""#),
        "{log}"
    );
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_challenge_and_the_upstream_never_runs() {
    let key = Key::eddsa("k1");
    let (_idp_server, idp) = Idp::start(&[&key]).await;
    let s = gateway(&idp, json!({})).await;
    let good = claims(&idp);
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        enc(&json!({"alg": "none", "kid": "k1"})),
        enc(&good)
    );
    // HS256 with the issuer's public key as the secret: the classic algorithm confusion.
    let public = URL_SAFE_NO_PAD
        .decode(key.jwk()["x"].as_str().unwrap())
        .unwrap();
    let hs_input = format!(
        "{}.{}",
        enc(&json!({"alg": "HS256", "kid": "k1"})),
        enc(&good)
    );
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public),
        hs_input.as_bytes(),
    );
    let hs256 = format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    let other_path = with(good.clone(), "aud", json!("http://localhost:4000/wiki/mcp"));
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong audience",
            key.sign(&with(
                good.clone(),
                "aud",
                json!("https://elsewhere.example/mcp"),
            )),
        ),
        (
            "wrong issuer",
            key.sign(&with(good.clone(), "iss", json!("https://evil.example"))),
        ),
        (
            "expired",
            key.sign(&with(good.clone(), "exp", json!(now() - 3600))),
        ),
        (
            "not yet valid",
            key.sign(&with(good.clone(), "nbf", json!(now() + 3600))),
        ),
        ("no expiry", key.sign(&without(good.clone(), "exp"))),
        ("alg none", unsigned),
        ("HS256 with the public key", hs256),
        (
            "a missing mapped claim",
            key.sign(&without(good.clone(), "email")),
        ),
        (
            "a team nobody set up",
            key.sign(&with(good.clone(), "groups", json!(["sales"]))),
        ),
        ("another scoped path's token", key.sign(&other_path)),
        ("a forged signature", {
            let t = key.sign(&good);
            let (head, _) = t.rsplit_once('.').unwrap();
            let forged = key.sign(&with(good.clone(), "sub", json!("admin")));
            format!("{}.{}", head, forged.rsplit_once('.').unwrap().1)
        }),
        ("not a JWT", "sk-unknown".to_owned()),
    ];
    let metadata = "resource_metadata=\"http://localhost:4000/.well-known/oauth-protected-resource/github/mcp\"";
    for (what, token) in &cases {
        let (status, challenge, body) =
            raw_call(&s.gw.url("/github/mcp"), Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
        assert!(challenge.contains(metadata), "{what}: {challenge}");
        assert!(challenge.contains("scope=\"mcp\""), "{what}: {challenge}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(body["error"].is_string(), "{what}: {body}");
        assert!(!body.to_string().contains("eng"), "{what}: {body}");
    }
    // The scoped path's own token is accepted there, and so is a token for the whole gateway.
    let own = key.sign(&with(
        good.clone(),
        "aud",
        json!("http://localhost:4000/github/mcp"),
    ));
    for token in [own.as_str(), &key.sign(&good)] {
        let (status, _, body) =
            raw_call(&s.gw.url("/github/mcp"), Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, 200, "{body}");
    }
    // A path's own token does not open the whole gateway.
    let (status, ..) = raw_call(&s.gw.url("/mcp"), Some(&format!("Bearer {own}"))).await;
    assert_eq!(status, 401);
    // Without the required scope: 403 insufficient_scope.
    let unscoped = key.sign(&with(good.clone(), "scope", json!("mcp:github")));
    let (status, challenge, _) =
        raw_call(&s.gw.url("/mcp"), Some(&format!("Bearer {unscoped}"))).await;
    assert_eq!(status, 403);
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"mcp\""), "{challenge}");
    // No credential: where to start, and no error.
    let (status, challenge, _) = raw_call(&s.gw.url("/mcp"), None).await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge,
        "Bearer resource_metadata=\"http://localhost:4000/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
    );
    assert_eq!(s.github.executions.names(), ["list_issues", "list_issues"]);
    // Every refusal is in the audit trail; no token is.
    let mut tokens: Vec<&str> = cases.iter().map(|(_, t)| t.as_str()).collect();
    tokens.extend([own.as_str(), unscoped.as_str()]);
    let log = s.audit_without(&tokens);
    let auth = log
        .lines()
        .filter(|l| l.contains(r#""event":"auth""#))
        .count();
    assert!(auth >= cases.len(), "{log}");
    assert!(log.contains(r#""rule":"insufficient_scope""#), "{log}");
}

#[tokio::test]
async fn rsa_tokens_verify_under_the_algorithm_they_name_only() {
    let rs = Key::rsa("rsa-1", false);
    let ps = Key::rsa("rsa-2", true);
    let (_idp_server, idp) = Idp::start(&[&rs, &ps]).await;
    let s = gateway(&idp, json!({})).await;
    let url = s.gw.url("/mcp");
    for key in [&rs, &ps] {
        let (status, _, body) =
            raw_call(&url, Some(&format!("Bearer {}", key.sign(&claims(&idp))))).await;
        assert_eq!(status, 200, "{}: {body}", key.alg());
    }
    // A PKCS#1 signature presented as PS256 (and the reverse) does not verify.
    for (key, claimed) in [(&rs, "PS256"), (&ps, "RS256")] {
        let token = key.sign(&claims(&idp));
        let (header, rest) = token.split_once('.').unwrap();
        let mut h: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        h["alg"] = json!(claimed);
        let relabelled = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(h.to_string()));
        let (status, challenge, _) = raw_call(&url, Some(&format!("Bearer {relabelled}"))).await;
        assert_eq!(status, 401, "{claimed}");
        assert!(challenge.contains("invalid_token"));
    }
    assert_eq!(s.github.executions.names().len(), 2);
}

#[tokio::test]
async fn protected_resource_metadata_describes_each_path() {
    let key = Key::es256("k1");
    let (_idp_server, idp) = Idp::start(&[&key]).await;
    let s = gateway(&idp, json!({})).await;
    let http = http_client();
    // Read by browser clients of any origin (the gateway's own CORS allows none here).
    let get = |path: &str| {
        http.get(s.gw.url(path))
            .header("origin", "https://client.example")
            .send()
    };
    for (path, resource) in [
        ("/.well-known/oauth-protected-resource", RESOURCE),
        ("/.well-known/oauth-protected-resource/mcp", RESOURCE),
        (
            "/.well-known/oauth-protected-resource/github/mcp",
            "http://localhost:4000/github/mcp",
        ),
        (
            "/.well-known/oauth-protected-resource/mcp/github,wiki",
            "http://localhost:4000/mcp/github,wiki",
        ),
    ] {
        let response = get(path).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        let doc: Value = response.json().await.unwrap();
        assert_eq!(doc["resource"], resource, "{path}");
        assert_eq!(doc["authorization_servers"], json!([idp.issuer()]));
        assert_eq!(
            doc["scopes_supported"],
            json!(["mcp", "mcp:github", "mcp:wiki"])
        );
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    }
    for path in [
        "/.well-known/oauth-protected-resource/elsewhere",
        "/.well-known/oauth-protected-resource/a//mcp",
        "/.well-known/oauth-protected-resource/github/mcp/extra",
    ] {
        assert_eq!(get(path).await.unwrap().status(), 404, "{path}");
    }
    // Asked without a token: nothing fetched from the issuer.
    assert_eq!(idp.hits(), 0);
}

#[tokio::test]
async fn an_unknown_kid_is_fetched_for_once_then_refused() {
    let key = Key::es256("k1");
    let stranger = Key::es256("k-unknown");
    let (_idp_server, idp) = Idp::start(&[&key]).await;
    let s = gateway(&idp, json!({})).await;
    let url = s.gw.url("/mcp");
    let (status, ..) = raw_call(&url, Some(&format!("Bearer {}", key.sign(&claims(&idp))))).await;
    assert_eq!(status, 200);
    assert_eq!(idp.hits(), 1);
    for _ in 0..3 {
        let token = stranger.sign(&claims(&idp));
        let (status, challenge, _) = raw_call(&url, Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, 401);
        assert!(challenge.contains("invalid_token"));
    }
    assert_eq!(idp.hits(), 2, "one refetch for the unknown kid, then none");
    assert!(s.github.executions.names().len() == 1);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once() {
    let old = Key::eddsa("2026-01");
    let new = Key::es256("2026-02");
    let (_idp_server, idp) = Idp::start(&[&old]).await;
    let s = gateway(&idp, json!({})).await;
    let url = s.gw.url("/mcp");
    let (status, ..) = raw_call(&url, Some(&format!("Bearer {}", old.sign(&claims(&idp))))).await;
    assert_eq!(status, 200);
    *idp.keys.lock().unwrap() = vec![old.jwk(), new.jwk()];
    let calls = (0..6).map(|i| {
        let token = new.sign(&with(claims(&idp), "jti", json!(i)));
        let url = url.clone();
        async move { raw_call(&url, Some(&format!("Bearer {token}"))).await.0 }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert_eq!(statuses, [200; 6]);
    assert_eq!(idp.hits(), 2, "the new key set is fetched once");
    // The old key still works, from the same set.
    let (status, ..) = raw_call(
        &url,
        Some(&format!(
            "Bearer {}",
            old.sign(&with(claims(&idp), "jti", json!("o")))
        )),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(idp.hits(), 2);
}

#[tokio::test]
async fn cached_keys_serve_while_the_issuer_is_down() {
    let key = Key::es256("k1");
    let (_idp_server, idp) = Idp::start(&[&key]).await;
    // Refreshed on every use, so each request below tries the issuer in the background.
    let s = gateway(&idp, json!({"jwks_refresh_seconds": 0})).await;
    let url = s.gw.url("/mcp");
    let (status, ..) = raw_call(&url, Some(&format!("Bearer {}", key.sign(&claims(&idp))))).await;
    assert_eq!(status, 200);
    idp.down.store(true, Ordering::SeqCst);
    for i in 0..3 {
        // A token not seen before: its signature is checked with the cached key.
        let token = key.sign(&with(claims(&idp), "jti", json!(i)));
        let (status, _, body) = raw_call(&url, Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        idp.hits() > 1,
        "refreshes were tried while the issuer was down"
    );
    assert_eq!(s.github.executions.names().len(), 4);
}

#[tokio::test]
async fn an_issuer_never_reached_fails_closed_with_503() {
    let key = Key::es256("k1");
    let (_idp_server, idp) = Idp::start(&[&key]).await;
    idp.down.store(true, Ordering::SeqCst);
    let s = gateway(&idp, json!({})).await;
    for i in 0..3 {
        let token = key.sign(&with(claims(&idp), "jti", json!(i)));
        let (status, _, body) = raw_call(&s.gw.url("/mcp"), Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, 503, "{body}");
    }
    // One attempt (RFC 8414 metadata, then OpenID discovery); the next requests do not ask
    // again until the refetch interval has passed.
    assert_eq!(idp.discoveries.load(Ordering::SeqCst), 1);
    assert!(s.github.executions.names().is_empty());
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_cached() {
    let key = Key::es256("k1");
    let (_idp_server, idp) = Idp::start(&[&key]).await;
    let s = gateway(
        &idp,
        json!({"issuer": {"introspection": {"client_id": "gateway", "client_secret": "s3cret"}}}),
    )
    .await;
    let client = connect_with(&s.gw.url("/mcp"), bearer("opaque-good")).await;
    assert_eq!(tool_names(&client).await, ["wiki-search"]);
    assert_eq!(
        call(&client, "wiki-search", json!({"q": "x"}))
            .await
            .map(|_| ()),
        Ok(())
    );
    client.cancel().await.unwrap();
    assert_eq!(
        idp.introspections.load(Ordering::SeqCst),
        1,
        "asked once, then cached"
    );
    let (status, challenge, _) = raw_call(&s.gw.url("/mcp"), Some("Bearer opaque-revoked")).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("invalid_token"));
    // A key is never sent to the authorization server.
    let before = idp.introspections.load(Ordering::SeqCst);
    let client = connect_with(&s.gw.url("/mcp"), bearer("sk-alice")).await;
    assert_eq!(tool_names(&client).await, ["wiki-search"]);
    client.cancel().await.unwrap();
    assert_eq!(idp.introspections.load(Ordering::SeqCst), before);
}

#[test]
fn oauth_settings_are_checked_when_the_configuration_loads() {
    let base = |oauth: Value| {
        json!({"general_settings": {"oauth": oauth},
               "mcp_servers": {"github": {"url": "http://127.0.0.1:9/mcp"}}})
        .to_string()
    };
    let issuer = |extra: Value| {
        let mut i = json!({"issuer": "https://login.example.com"});
        for (k, v) in extra.as_object().unwrap() {
            i[k] = v.clone();
        }
        i
    };
    let good = json!({"resource": "https://gw.example.com/mcp", "issuers": [issuer(json!({}))]});
    Config::from_json_str(&base(good.clone()))
        .unwrap()
        .policy()
        .unwrap();
    let bad = [
        (
            json!({"resource": "https://gw.example.com/mcp", "issuers": [issuer(json!({}))], "typo": 1}),
            "typo",
        ),
        (
            json!({"resource": "https://gw.example.com/api", "issuers": [issuer(json!({}))]}),
            "/mcp",
        ),
        (
            json!({"resource": "http://gw.example.com/mcp", "issuers": [issuer(json!({}))]}),
            "https",
        ),
        (
            json!({"resource": "https://gw.example.com/mcp", "issuers": []}),
            "at least one",
        ),
        (
            json!({"resource": "https://gw.example.com/mcp", "issuers": [issuer(json!({"algorithms": ["none"]}))]}),
            "never none",
        ),
        (
            json!({"resource": "https://gw.example.com/mcp", "issuers": [issuer(json!({"algorithms": ["HS256"]}))]}),
            "HMAC",
        ),
        (
            json!({"resource": "https://gw.example.com/mcp", "issuers": [issuer(json!({"claims": {"team_id": "groups["}}))]}),
            "claim path",
        ),
        (
            json!({"resource": "https://gw.example.com/mcp", "issuers": [issuer(json!({"scopes": {"s": {"mcp_servers": ["nope"]}}}))]}),
            "nope",
        ),
        (
            json!({"resource": "https://gw.example.com/mcp", "issuers": [issuer(json!({})), issuer(json!({}))]}),
            "twice",
        ),
        (
            json!({"resource": "https://gw.example.com/mcp", "issuers": [
            issuer(json!({"introspection": {"client_id": "a", "client_secret": "b"}})),
            {"issuer": "https://other.example.com", "introspection": {"client_id": "a", "client_secret": "b"}}]}),
            "at most one",
        ),
    ];
    for (oauth, needle) in bad {
        let error = Config::from_json_str(&base(oauth.clone()))
            .and_then(|c| c.policy().map(drop))
            .expect_err(&oauth.to_string())
            .to_string();
        assert!(error.contains(needle), "{error}");
        assert!(error.contains("general_settings.oauth"), "{error}");
    }
}

/// The resolver and the metadata service in an axum app of one's own, in front of an rmcp
/// server, without the gateway: a token's team narrows the server's tools as it would a key's.
#[tokio::test]
async fn the_resolver_serves_any_app_without_the_gateway() {
    use mcp_gatekeeper::oauth::{METADATA_PATH, OAuth};
    use tower::Layer;

    let key = Key::es256("k1");
    let (_idp_server, idp) = Idp::start(&[&key]).await;
    let doc = json!({
        "general_settings": {"oauth": {"resource": RESOURCE, "required_scopes": ["mcp"],
            "issuers": [{"issuer": idp.issuer(), "claims": {"team_id": "groups[0]"}}]}},
        "mcp_servers": {"inhouse": {"url": "http://127.0.0.1:9/mcp"}},
        "teams": [{"team_id": "eng", "object_permission": {"mcp_tool_permissions": {"inhouse": ["search"]}}}]
    });
    let config = Config::from_json_str(&doc.to_string()).unwrap();
    let gatekeeper = Gatekeeper::for_server(config.policy().unwrap(), "inhouse");
    let oauth = OAuth::from_config(config.general_settings.oauth.as_ref().unwrap()).unwrap();
    let server = RecordingServer::new(vec![tool("search", &["q"]), tool("delete", &[])], &[], &[]);
    let ct = CancellationToken::new();
    let layers = gatekeeper.layer().identity(IdentityLayer::with_resolver(
        gatekeeper.clone(),
        oauth.clone(),
    ));
    let app = axum::Router::new()
        .route_service(METADATA_PATH, oauth.metadata())
        .route_service(&format!("{METADATA_PATH}/{{*path}}"), oauth.metadata())
        .nest_service(
            "/mcp",
            layers.layer(mcp_service(server.clone(), Mode::StatelessJson, &ct)),
        );
    let app = serve(app, ct).await;

    let client = connect_with(&app.url("/mcp"), bearer(&key.sign(&claims(&idp)))).await;
    assert_eq!(tool_names(&client).await, ["search"]);
    assert_eq!(
        call(&client, "search", json!({"q": "x"})).await.map(|_| ()),
        Ok(())
    );
    let refused = call(&client, "delete", json!({})).await;
    assert!(
        matches!(&refused, Err(t) if !t.starts_with("service error")),
        "{refused:?}"
    );
    client.cancel().await.unwrap();
    assert_eq!(server.executions.names(), ["search"]);

    let (status, challenge, _) = raw_call(&app.url("/mcp"), None).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains("oauth-protected-resource/mcp"),
        "{challenge}"
    );
    let doc: Value = http_client()
        .get(app.url("/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(doc["authorization_servers"], json!([idp.issuer()]));
}

/// An MCP session belongs to the token's issuer and subject: a refreshed token (same subject)
/// keeps it; another subject's token, or a key, gets 404 for it.
#[tokio::test]
async fn a_session_outlives_its_token_but_not_its_subject() {
    let key = Key::es256("k1");
    let (_idp_server, idp) = Idp::start(&[&key]).await;
    let s = gateway(&idp, json!({})).await;
    let url = s.gw.url("/mcp");
    let http = http_client();
    let post = |authorization: String, session: Option<&str>, body: Value| {
        let mut r = http
            .post(&url)
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(sid) = session {
            r = r.header("mcp-session-id", sid);
        }
        r.json(&body).send()
    };
    let first = format!(
        "Bearer {}",
        key.sign(&with(claims(&idp), "jti", json!("a")))
    );
    let init = post(first, None, json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}))
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.text().await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let refreshed = format!(
        "Bearer {}",
        key.sign(&with(claims(&idp), "jti", json!("b")))
    );
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post(refreshed.clone(), Some(&sid), initialized)
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = post(refreshed, Some(&sid), list.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("github-list_issues"));
    let someone_else = format!(
        "Bearer {}",
        key.sign(&with(claims(&idp), "sub", json!("user-2")))
    );
    let r = post(someone_else, Some(&sid), list.clone()).await.unwrap();
    assert_eq!(r.status(), 404);
    let r = post("Bearer sk-alice".into(), Some(&sid), list)
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
