//! What the identity layer costs per request when it resolves OAuth tokens: a token seen
//! before (its signature checked once, then the per-request checks: time, audience, scopes,
//! the principal), a token seen for the first time (the signature checked with a cached key,
//! ES256, RS256 and EdDSA), and an API key through the same resolver for comparison.
//!
//! `cargo bench --features oauth --bench oauth`

#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http_body_util::Full;
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::body::Body;
use mcp_gatekeeper::config::Config;
use mcp_gatekeeper::identity::IdentityLayer;
use mcp_gatekeeper::oauth::OAuth;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt};

const RESOURCE: &str = "http://localhost:4000/mcp";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(alg: &str, kid: &str, claims: &Value, signer: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signer(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn bench_oauth(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let es_alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let es = EcdsaKeyPair::from_pkcs8(
        es_alg,
        EcdsaKeyPair::generate_pkcs8(es_alg, &rng).unwrap().as_ref(),
        &rng,
    )
    .unwrap();
    let ed =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let point = es.public_key().as_ref().to_vec();
    let (rsa, rsa_n, rsa_e) = {
        use rsa::pkcs8::EncodePrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let der = private.to_pkcs8_der().unwrap();
        let pair = signature::RsaKeyPair::from_pkcs8(der.as_bytes()).unwrap();
        (pair, private.n().to_bytes_be(), private.e().to_bytes_be())
    };
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "es", "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
         "y": URL_SAFE_NO_PAD.encode(&point[33..])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": URL_SAFE_NO_PAD.encode(ed.public_key().as_ref())},
        {"kty": "RSA", "kid": "rs", "n": URL_SAFE_NO_PAD.encode(&rsa_n), "e": URL_SAFE_NO_PAD.encode(&rsa_e)}
    ]});

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let keys = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.to_string();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], jwks) }
        }),
    );
    rt.spawn(async move { axum::serve(listener, keys).await });

    let config = Config::from_json_str(
        &json!({
            "general_settings": {"oauth": {"resource": RESOURCE, "required_scopes": ["mcp"],
                "issuers": [{"issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
                             "claims": {"team_id": "groups[0]"},
                             "scopes": {"mcp:bench": {"mcp_servers": ["bench"]}}}]}},
            "mcp_servers": {"bench": {"url": "http://127.0.0.1/mcp"}},
            "teams": [{"team_id": "t", "object_permission": {"mcp_servers": ["bench"]}}],
            "keys": [{"key": "sk-bench", "team_id": "t"}]
        })
        .to_string(),
    )
    .unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let oauth = OAuth::from_config(config.general_settings.oauth.as_ref().unwrap()).unwrap();
    let answer = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(Body::empty()))
    });
    let mut service = IdentityLayer::with_resolver(gk, oauth).layer(answer);
    let claims = |i: u64| {
        json!({"iss": issuer, "sub": format!("user-{i}"), "aud": RESOURCE, "exp": now() + 3600,
               "groups": ["t"], "scope": "mcp mcp:bench"})
    };
    let es_token = |i| {
        sign("ES256", "es", &claims(i), |m| {
            es.sign(&rng, m).unwrap().as_ref().to_vec()
        })
    };
    let ed_token = |i| sign("EdDSA", "ed", &claims(i), |m| ed.sign(m).as_ref().to_vec());
    let rs_token = |i| {
        sign("RS256", "rs", &claims(i), |m| {
            let mut out = vec![0; rsa.public().modulus_len()];
            rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, m, &mut out)
                .unwrap();
            out
        })
    };
    let request = |name: &str, value: &str| {
        http::Request::post("http://127.0.0.1/mcp")
            .header(name, value)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    // The first token fetches the key set (asynchronously); every request below is answered
    // from what is cached, synchronously.
    let first = rt
        .block_on(
            service
                .clone()
                .oneshot(request("authorization", &format!("Bearer {}", es_token(0)))),
        )
        .unwrap();
    assert_eq!(first.status(), 200);
    let mut call = |r| {
        let response = service
            .call(r)
            .now_or_never()
            .expect("answered at once")
            .unwrap();
        assert_eq!(response.status(), 200);
        response
    };

    let mut group = c.benchmark_group("oauth identity per request");
    group.bench_function("API key through the OAuth resolver", |b| {
        b.iter(|| call(black_box(request("x-litellm-api-key", "sk-bench"))))
    });
    let seen = format!("Bearer {}", ed_token(1));
    call(request("authorization", &seen));
    group.bench_function("token seen before", |b| {
        b.iter(|| call(black_box(request("authorization", &seen))))
    });
    let mut n = 10;
    group.bench_function("token first seen, ES256", |b| {
        b.iter_batched(
            || {
                n += 1;
                request("authorization", &format!("Bearer {}", es_token(n)))
            },
            &mut call,
            BatchSize::SmallInput,
        )
    });
    group.bench_function("token first seen, RS256", |b| {
        b.iter_batched(
            || {
                n += 1;
                request("authorization", &format!("Bearer {}", rs_token(n)))
            },
            &mut call,
            BatchSize::SmallInput,
        )
    });
    group.bench_function("token first seen, EdDSA", |b| {
        b.iter_batched(
            || {
                n += 1;
                request("authorization", &format!("Bearer {}", ed_token(n)))
            },
            &mut call,
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_oauth);
criterion_main!(benches);
