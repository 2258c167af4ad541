//! What the environment says about TLS: `SSL_CERT_FILE` adds its CA to the default roots, and
//! `HTTPS_PROXY` carries upstream connections through a CONNECT proxy, with TLS from end to end.
//! The example gateway runs as a child process with the variables set (they are read once per
//! process, and a test may not set its own).
#![cfg(feature = "gateway")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::tls::*;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CONNECT proxy on loopback: the number of tunnels it opened, and the targets it was asked for.
async fn connect_proxy() -> (u16, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let targets: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (count, asked) = (Arc::clone(&tunnels), Arc::clone(&targets));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (count, asked) = (Arc::clone(&count), Arc::clone(&asked));
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read_exact(&mut byte).await.is_err() || head.len() > 8192 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut words = head.split_whitespace();
                let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
                    let _ = client
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                        .await;
                    return;
                };
                asked.lock().unwrap().push(target.to_owned());
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (port, tunnels, targets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_cert_file_joins_the_roots_and_https_proxy_carries_the_connections() {
    let files = Files::new("environment");
    let ca = Ca::new("a CA only SSL_CERT_FILE names");
    let ca_file = files.write("ca.pem", &ca.pem);
    let (proxy, tunnels, targets) = connect_proxy().await;
    let (up, server) = mcp_upstream(server_config(&ca.leaf(&["localhost"], false), None)).await;
    // No ssl_verify: the default roots, which hold the CA SSL_CERT_FILE names.
    let config = files.write(
        "gateway.json",
        &format!(
            r#"{{"general_settings": {{"master_key": "sk-admin"}},
                "mcp_servers": {{"up": {{"url": "{url}"}},
                                 "posted": {{"url": "{url}", "protocol_version": "2025-11-25"}}}}}}"#,
            url = up.url("/mcp")
        ),
    );
    let proxy_url = format!("http://127.0.0.1:{proxy}");
    let (_child, line) = example_gateway(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--bind".as_ref(),
            "127.0.0.1:0".as_ref(),
        ],
        &[
            ("SSL_CERT_FILE", ca_file.as_os_str()),
            ("HTTPS_PROXY", proxy_url.as_ref()),
            ("NO_PROXY", "".as_ref()),
            ("no_proxy", "".as_ref()),
        ],
    )
    .await;
    let gw = format!("http://127.0.0.1:{}/mcp", port_in(&line));
    let client = connect(&gw, &[("x-litellm-api-key", "sk-admin")])
        .await
        .unwrap();
    // "posted" is spoken to with the handshake: the gateway posts its calls and lists itself,
    // through the same proxy.
    let mut names = tool_names(&client).await;
    names.sort();
    assert_eq!(
        names,
        ["posted-headers", "posted-ping", "up-headers", "up-ping"]
    );
    call(&client, "up-ping", json!({})).await.unwrap();
    call(&client, "posted-ping", json!({})).await.unwrap();
    assert_eq!(server.executions.names(), ["ping", "ping"]);
    assert!(
        tunnels.load(Ordering::SeqCst) >= 1,
        "nothing went through the proxy"
    );
    let targets = targets.lock().unwrap().clone();
    assert!(
        targets
            .iter()
            .all(|t| *t == format!("localhost:{}", up.port)),
        "{targets:?}"
    );
    // Every connection the upstream accepted came through the proxy.
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        tunnels.load(Ordering::SeqCst)
    );
}

/// Without `SSL_CERT_FILE` the same upstream is not trusted: the variable, not anything else,
/// made the difference above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ssl_cert_file_the_same_upstream_is_refused() {
    let files = Files::new("no-environment");
    let ca = Ca::new("a CA no one names");
    let (up, server) = mcp_upstream(server_config(&ca.leaf(&["localhost"], false), None)).await;
    let config = files.write(
        "gateway.json",
        &format!(
            r#"{{"general_settings": {{"master_key": "sk-admin"}},
                "mcp_servers": {{"up": {{"url": "{}", "timeout": 5}}}}}}"#,
            up.url("/mcp")
        ),
    );
    let (_child, line) = example_gateway(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--bind".as_ref(),
            "127.0.0.1:0".as_ref(),
        ],
        &[],
    )
    .await;
    let gw = format!("http://127.0.0.1:{}/mcp", port_in(&line));
    let client = connect(&gw, &[("x-litellm-api-key", "sk-admin")])
        .await
        .unwrap();
    assert!(tool_names(&client).await.is_empty());
    assert!(server.executions.names().is_empty());
}
