//! The master key's view of tool pinning: `GET /admin/pins` lists what is quarantined, and
//! `POST /admin/pins/approve` pins a definition to what the server lists now (or to a given
//! digest), which brings it back at once, on this replica, without a restart; the pin is saved
//! to the pin store, where other replicas find it when they start.

use axum::extract::State;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::internal::{McpResponse, Surface, bad, json_response};
use crate::engine::{Catalog, PinDigest, PinKind, PinMode, Principal};
use crate::gatekeeper::Gatekeeper;

/// Every quarantined definition, as `/health` and `GET /admin/pins` show it.
pub(crate) fn quarantined(gk: &Gatekeeper, catalog: &Catalog) -> Value {
    let rules = |name: &str| {
        catalog
            .lookup(name)
            .map(|id| catalog.server(id).pin_rules())
    };
    let list: Vec<Value> = gk
        .pins()
        .quarantined(rules)
        .into_iter()
        .map(|q| {
            let withheld = catalog
                .lookup(&q.server)
                .is_some_and(|id| catalog.server(id).pin_rules().mode == PinMode::Enforce);
            json!({
                "server": q.server,
                "kind": q.kind.as_str(),
                "name": q.name,
                "pinned": q.pinned.map(|d| d.to_string()),
                "seen": q.seen.map(|d| d.to_string()),
                "withheld": withheld,
            })
        })
        .collect();
    let mut out = json!({ "quarantined": list });
    if let Some(problem) = gk.pins().store_problem() {
        out["store_error"] = Value::String(problem);
    }
    out
}

/// The master key's principal, or why the caller is refused.
fn master_only(
    state: &Surface,
    headers: &HeaderMap,
) -> Result<Principal, (StatusCode, &'static str)> {
    let policy = state.shared.gatekeeper.policy();
    let identities = policy.identities();
    match (state.digest)(headers) {
        Ok(Some(d)) if identities.is_master(&d) => {
            Ok(identities.principal(&d, None, None).unwrap_or_default())
        }
        Ok(None) => Err((StatusCode::UNAUTHORIZED, "the master key is required")),
        _ => Err((StatusCode::FORBIDDEN, "only the master key may manage pins")),
    }
}

fn refused((status, why): (StatusCode, &str)) -> McpResponse {
    json_response(status, &json!({ "error": why }))
}

pub(crate) async fn list(State(state): State<Surface>, headers: HeaderMap) -> McpResponse {
    if let Err(why) = master_only(&state, &headers) {
        return refused(why);
    }
    let gk = &state.shared.gatekeeper;
    json_response(StatusCode::OK, &quarantined(gk, gk.policy().catalog()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Approve {
    server: String,
    tool: Option<String>,
    prompt: Option<String>,
    /// A UI resource of an MCP App, by the `ui://` URI its server knows it by.
    app: Option<String>,
    digest: Option<String>,
}

pub(crate) async fn approve(
    State(state): State<Surface>,
    headers: HeaderMap,
    body: Bytes,
) -> McpResponse {
    let master = match master_only(&state, &headers) {
        Ok(master) => master,
        Err(why) => return refused(why),
    };
    let Ok(approve) = serde_json::from_slice::<Approve>(&body) else {
        return bad(
            "expected {\"server\", \"tool\", \"prompt\" or \"app\", and optionally \"digest\": \"sha256:…\"}",
        );
    };
    let (kind, name) = match (approve.tool, approve.prompt, approve.app) {
        (Some(tool), None, None) => (PinKind::Tool, tool),
        (None, Some(prompt), None) => (PinKind::Prompt, prompt),
        (None, None, Some(app)) => (PinKind::App, app),
        _ => return bad("name exactly one of \"tool\", \"prompt\" and \"app\""),
    };
    let digest = match approve.digest.as_deref().map(str::parse::<PinDigest>) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return bad(&e.to_string()),
    };
    let gk = &state.shared.gatekeeper;
    let policy = gk.policy();
    let catalog = policy.catalog();
    let Some(server) = catalog.lookup(&approve.server).map(|id| catalog.server(id)) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "no server of that name"}),
        );
    };
    if server.pin_rules().mode == PinMode::Off {
        return bad("tool_pinning is off for this server");
    }
    match gk
        .pins()
        .approve(kind, server.name(), &name, server.pin_rules(), digest)
    {
        Ok(pinned) => {
            crate::decision_events::pin_approved(
                gk.audit(),
                Some(&master),
                kind,
                server.name(),
                &name,
                pinned,
            );
            json_response(
                StatusCode::OK,
                &json!({
                    "server": server.name(),
                    "kind": kind.as_str(),
                    "name": name,
                    "pinned": pinned.to_string(),
                }),
            )
        }
        Err(e) => json_response(StatusCode::CONFLICT, &json!({"error": e.to_string()})),
    }
}
