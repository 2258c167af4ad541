//! With feature `tracing`, every decision is an event (target `mcp_gatekeeper::audit`) that names
//! the principal by ids and says what refused it — and never carries a key.
#![cfg(feature = "tracing")]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use mcp_gatekeeper::Gatekeeper;
use mcp_gatekeeper::config::Config;
use tower::{ServiceBuilder, ServiceExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = String::new();
        event.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn decisions_are_traced_without_keys() {
    let config = Config::from_json_str(
        r#"{"mcp_servers": {"github": {"url": "http://x"}, "secret": {"url": "http://y"}},
            "keys": [{"key": "sk-very-secret-alice", "key_alias": "alice", "team_id": "eng"}],
            "teams": [{"team_id": "eng", "object_permission": {"mcp_servers": ["github"]}}]}"#,
    )
    .unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let inner = tower::service_fn(|_: Request<axum::body::Body>| async {
        Ok::<_, Infallible>(Response::new(BoxBody::new(
            Full::new(Bytes::new()).map_err(|never| match never {}),
        )))
    });
    let svc = ServiceBuilder::new().layer(gk.layer()).service(inner);
    let capture = Capture::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::subscriber::with_default(capture.clone(), || {
        rt.block_on(async {
            for (key, tool) in [("sk-very-secret-alice", "secret-launch"), ("sk-very-secret-alice", "github-list"), ("sk-wrong", "x")] {
                let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"token":"arg-secret-value"}}}}}}"#);
                let req = Request::post("/mcp").header("x-litellm-api-key", key).body(axum::body::Body::from(body)).unwrap();
                svc.clone().oneshot(req).await.unwrap();
            }
        });
    });
    let lines = capture.0.lock().unwrap().clone();
    let refused = lines
        .iter()
        .find(|l| l.contains("secret-launch"))
        .expect("a refusal event");
    assert!(refused.contains("outcome=\"refused\""), "{refused}");
    assert!(
        refused.contains("key=\"alice\"") && refused.contains("team=\"eng\""),
        "{refused}"
    );
    assert!(refused.contains("method=\"tools/call\""), "{refused}");
    assert!(
        refused.contains("rule=\"permissions\"") && refused.contains("level=\"team\""),
        "names the level that refused: {refused}"
    );
    let allowed = lines
        .iter()
        .find(|l| l.contains("github-list"))
        .expect("an allow event");
    assert!(
        allowed.contains("outcome=\"allowed\"") && allowed.contains("server=\"github\""),
        "{allowed}"
    );
    assert!(
        allowed.contains("arguments=\"token\""),
        "names only: {allowed}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("event=\"auth\"") && l.contains("rule=\"invalid_credential\"")),
        "{lines:?}"
    );
    for l in &lines {
        assert!(
            !l.contains("sk-very-secret-alice") && !l.contains("sk-wrong"),
            "a key leaked into: {l}"
        );
        assert!(
            !l.contains("arg-secret-value"),
            "an argument value leaked into: {l}"
        );
    }
}
