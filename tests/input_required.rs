//! Input-required results (protocol 2026-07-28) of an upstream through the gateway: a handshake
//! caller is asked the upstream's requests as requests of its own; a 2026-07-28 caller gets
//! them in an input-required result under a state of the gateway's, bound to its key and to
//! the request it was given for.
#![cfg(feature = "gateway")]

mod common;

use common::asker::{Asker, Blue};
use common::*;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn input_required_results_of_a_2026_upstream_reach_callers_of_every_era() {
    use rmcp::ServiceExt;
    let asker = Asker::default();
    let ct = CancellationToken::new();
    let factory = asker.clone();
    let upstream = serve(
        axum::Router::new().nest_service(
            "/mcp",
            rmcp::transport::streamable_http_server::StreamableHttpService::new(
                move || Ok(factory.clone()),
                std::sync::Arc::new(
                    rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default(),
                ),
                Mode::StatefulSse.config(&ct),
            ),
        ),
        ct,
    )
    .await;
    let doc = format!(
        r#"{{
      "general_settings": {{"master_key": "sk-admin"}},
      "mcp_servers": {{"asker": {{"url": "{}", "protocol_version": "2026-07-28"}}}},
      "keys": [{{"key": "sk-alice", "object_permission": {{"mcp_servers": ["asker"]}}}},
               {{"key": "sk-bob", "object_permission": {{"mcp_servers": ["asker"]}}}}]
    }}"#,
        upstream.url("/mcp")
    );
    let (gw, _gateway) = gateway_from_json(&doc).await;
    let url = gw.url("/mcp");

    // A handshake caller is asked as a request of its own, and gets the final result.
    let transport = keyed_transport(&url, "sk-alice");
    let client = Blue.serve(transport).await.unwrap();
    let result = client
        .peer()
        .call_tool(rmcp::model::CallToolRequestParams::new("asker-ask"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&result.content).unwrap()[0]["text"],
        "answered: blue"
    );
    assert_eq!(
        *asker.states.lock().unwrap(),
        [None, Some("asker-state".to_owned())]
    );
    asker.states.lock().unwrap().clear();

    // A 2026-07-28 caller gets the upstream's requests in an input-required result of the
    // gateway's, under a state of the gateway's, bound to it.
    let http = http_client();
    let sampling = json!({"sampling": {}});
    let first = modern_with(
        &http,
        &url,
        "sk-alice",
        1,
        "tools/call",
        json!({"name": "asker-ask", "arguments": {}}),
        sampling.clone(),
    )
    .send()
    .await
    .unwrap();
    let kind = first.headers()["content-type"].to_str().unwrap().to_owned();
    let first = messages(&kind, &first.text().await.unwrap()).pop().unwrap();
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let (key, request) = result["inputRequests"]
        .as_object()
        .and_then(|r| r.iter().next())
        .expect("one request");
    assert_eq!(request["method"], "sampling/createMessage", "{first}");
    assert_eq!(key, "colour", "the upstream's key is kept: {first}");
    let state = result["requestState"].as_str().unwrap().to_owned();
    assert!(
        !state.contains("asker-state"),
        "the upstream's state stays in the gateway"
    );
    let answers = json!({key.clone(): {"role": "assistant", "content": {"type": "text", "text": "green"}, "model": "m"}});
    let again = |who: &'static str, id: u64| {
        modern_with(
            &http,
            &url,
            who,
            id,
            "tools/call",
            json!({"name": "asker-ask", "arguments": {}, "inputResponses": answers, "requestState": state}),
            sampling.clone(),
        )
        .send()
    };
    // Another key presenting the state learns nothing and moves nothing.
    let foreign = again("sk-bob", 2).await.unwrap();
    let kind = foreign.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let foreign = messages(&kind, &foreign.text().await.unwrap())
        .pop()
        .unwrap();
    assert!(
        foreign["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("requestState")),
        "{foreign}"
    );
    let done = again("sk-alice", 3).await.unwrap();
    let kind = done.headers()["content-type"].to_str().unwrap().to_owned();
    let done = messages(&kind, &done.text().await.unwrap()).pop().unwrap();
    assert_eq!(
        done["result"]["content"][0]["text"], "answered: green",
        "{done}"
    );
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(
        *asker.states.lock().unwrap(),
        [None, Some("asker-state".to_owned())]
    );
    // The gateway spoke 2026-07-28 to it, as configured.
    assert!(
        asker
            .versions
            .lock()
            .unwrap()
            .iter()
            .all(|v| v == "2026-07-28"),
        "{:?}",
        asker.versions.lock().unwrap()
    );
}

/// `prompts/get` and `resources/read` of a 2026-07-28 upstream that needs an answer first: a
/// handshake caller cannot read an input-required result, so it is asked a request of its own
/// and gets the final result; the upstream sees its own state come back.
#[tokio::test]
async fn input_required_prompts_and_resources_reach_handshake_callers_as_requests() {
    use rmcp::ServiceExt;
    use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams, ResourceContents};
    let asker = Asker::default();
    let upstream = serve_handler(asker.clone()).await;
    let (gw, _gateway) = gateway_from_json(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin"}},
             "mcp_servers": {{"asker": {{"url": "{}", "protocol_version": "2026-07-28"}}}}}}"#,
        upstream.url("/mcp")
    ))
    .await;
    let transport = keyed_transport(&gw.url("/mcp"), "sk-admin");
    let client = Blue.serve(transport).await.unwrap();
    let prompt = client
        .get_prompt(GetPromptRequestParams::new("asker-colour"))
        .await
        .unwrap();
    let said = serde_json::to_value(&prompt.messages).unwrap().to_string();
    assert!(said.contains("answered: blue"), "{said}");
    // The upstream's own identity stays behind the gateway; its other `_meta` passes.
    let meta = serde_json::to_value(&prompt.meta).unwrap();
    assert_eq!(meta, json!({"trace": "kept"}));
    let read = client
        .read_resource(ReadResourceRequestParams::new("asker-doc://colour"))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text, uri, .. } = &read.contents[0] else {
        panic!("{read:?}");
    };
    assert_eq!(text, "answered: blue");
    assert_eq!(uri, "asker-doc://colour", "the caller's name for it");
    // Each was asked twice: first without state, then with the upstream's own.
    assert_eq!(
        *asker.states.lock().unwrap(),
        [
            None,
            Some("asker-state".to_owned()),
            None,
            Some("asker-state".to_owned())
        ]
    );
    let called = client
        .call_tool(rmcp::model::CallToolRequestParams::new("asker-ask"))
        .await
        .unwrap();
    let called = serde_json::to_value(&called).unwrap();
    assert!(called.to_string().contains("answered: blue"), "{called}");
    assert_eq!(called["_meta"], json!({"trace": "kept"}), "{called}");
    client.cancel().await.unwrap();
}

/// One request of a 2026-07-28 caller that may answer sampling; the last message of the reply.
async fn ask(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    id: u64,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let reply = modern_with(http, url, key, id, method, params, json!({"sampling": {}}))
        .send()
        .await
        .unwrap();
    let kind = reply.headers()["content-type"].to_str().unwrap().to_owned();
    messages(&kind, &reply.text().await.unwrap()).pop().unwrap()
}

/// `prompts/get` and `resources/read` of a 2026-07-28 caller: the upstream's input-required
/// round reaches it under a state of the gateway's; the state serves only the key it was given
/// to, only for the prompt or resource it was given for, only once; a state the gateway never
/// gave is refused before anything reaches the upstream.
#[tokio::test]
async fn input_required_prompts_and_resources_of_2026_callers_carry_bound_states() {
    let asker = Asker::default();
    let upstream = serve_handler(asker.clone()).await;
    let (gw, _gateway) = gateway_from_json(&format!(
        r#"{{"general_settings": {{"master_key": "sk-admin"}},
             "mcp_servers": {{"asker": {{"url": "{}", "protocol_version": "2026-07-28"}}}},
             "keys": [{{"key": "sk-alice", "object_permission": {{"mcp_servers": ["asker"]}}}},
                      {{"key": "sk-bob", "object_permission": {{"mcp_servers": ["asker"]}}}}]}}"#,
        upstream.url("/mcp")
    ))
    .await;
    let url = gw.url("/mcp");
    let http = http_client();
    let answers = |key: &str| json!({key: {"role": "assistant", "content": {"type": "text", "text": "green"}, "model": "m"}});
    for (method, target, other) in [
        (
            "prompts/get",
            json!({"name": "asker-colour"}),
            json!({"name": "asker-other"}),
        ),
        (
            "resources/read",
            json!({"uri": "asker-doc://colour"}),
            json!({"uri": "asker-doc://other"}),
        ),
    ] {
        asker.states.lock().unwrap().clear();
        let first = ask(&http, &url, "sk-alice", 1, method, target.clone()).await;
        let result = &first["result"];
        assert_eq!(result["resultType"], "input_required", "{method}: {first}");
        let (key, request) = result["inputRequests"]
            .as_object()
            .and_then(|r| r.iter().next())
            .expect("one request");
        assert_eq!(request["method"], "sampling/createMessage", "{first}");
        let state = result["requestState"].as_str().unwrap().to_owned();
        assert!(!state.contains("asker-state"), "{method}: {first}");
        let with = |params: &serde_json::Value, state: &str| {
            let mut p = params.clone();
            p["inputResponses"] = answers(key);
            p["requestState"] = json!(state);
            p
        };
        let refused = |reply: &serde_json::Value| {
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("requestState"))
        };
        // Another key, another prompt or resource, or a state never handed out: refused.
        let foreign = ask(&http, &url, "sk-bob", 2, method, with(&target, &state)).await;
        assert!(refused(&foreign), "{method}: {foreign}");
        let elsewhere = ask(&http, &url, "sk-alice", 3, method, with(&other, &state)).await;
        assert!(refused(&elsewhere), "{method}: {elsewhere}");
        let made_up = ask(
            &http,
            &url,
            "sk-alice",
            4,
            method,
            with(&target, "asker-state"),
        )
        .await;
        assert!(refused(&made_up), "{method}: {made_up}");
        // None of those reached the upstream: it saw the first request only.
        assert_eq!(*asker.states.lock().unwrap(), [None], "{method}");
        // Its owner's retry carries the upstream's own state back to it.
        let done = ask(&http, &url, "sk-alice", 5, method, with(&target, &state)).await;
        assert_eq!(done["result"]["resultType"], "complete", "{method}: {done}");
        assert!(
            done.to_string().contains("answered: green"),
            "{method}: {done}"
        );
        assert_eq!(
            *asker.states.lock().unwrap(),
            [None, Some("asker-state".to_owned())],
            "{method}"
        );
        // Used once: the same state again is refused.
        let replay = ask(&http, &url, "sk-alice", 6, method, with(&target, &state)).await;
        assert!(refused(&replay), "{method}: {replay}");
    }
}

/// A caller on a stateless endpoint has no session to be asked on: the endpoint takes its call
/// to a 2026-07-28 upstream (posted by the gateway itself once listed) and answers the
/// upstream's input-required round with a refusal at once, so the call ends with an error
/// instead of waiting for a timeout. The upstream is asked once, never again with answers.
#[tokio::test]
async fn a_stateless_caller_is_refused_an_upstream_input_round_at_once() {
    use mcp_gatekeeper::Gatekeeper;
    use mcp_gatekeeper::config::Config;
    use mcp_gatekeeper::gateway::Gateway;
    use tower::Layer;
    let asker = Asker::default();
    let upstream = serve_handler(asker.clone()).await;
    let ct = CancellationToken::new();
    // Discovered, as by default.
    let doc = format!(
        r#"{{"general_settings": {{"master_key": "sk-admin"}},
      "mcp_servers": {{"asker": {{"url": "{}"}}}},
      "keys": [{{"key": "sk-alice", "object_permission": {{"mcp_servers": ["asker"]}}}}]}}"#,
        upstream.url("/mcp")
    );
    let config = Config::from_json_str(&doc).unwrap();
    let gk = Gatekeeper::new(config.policy().unwrap());
    let gateway = Gateway::from_config(&config, gk).unwrap().build().unwrap();
    let service = gateway
        .gatekeeper()
        .layer()
        .layer(gateway.service(Mode::StatelessJson.config(&ct)));
    let gw = serve(axum::Router::new().fallback_service(service), ct.clone()).await;
    let (http, url) = (http_client(), gw.url("/mcp"));
    let listed: serde_json::Value = mcp_post(&http, &url, "sk-alice", None)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["result"]["tools"][0]["name"], "asker-ask",
        "{listed}"
    );
    let call = mcp_post(&http, &url, "sk-alice", None).json(&json!({
        "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "asker-ask", "arguments": {}}
    }));
    // (Bounded, so that a call left waiting fails instead of hanging the suite.)
    let reply = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        call.send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    })
    .await
    .expect("the call was left waiting");
    assert_eq!(reply["id"], 3, "{reply}");
    assert_eq!(
        reply["error"]["message"], "no client session to relay this request to",
        "{reply}"
    );
    assert_eq!(*asker.states.lock().unwrap(), [None]);
    ct.cancel();
}
