//! TLS fixtures: a CA and certificates made at run time (rcgen), MCP servers behind
//! tokio-rustls that count their connections, and a gateway built from a JSON config.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use super::{Mode, RecordingServer, mcp_service, tool};

/// A certificate authority made for one test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
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
    pub fn leaf(&self, names: &[&str], expired: bool) -> (String, String) {
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
pub struct Files(pub PathBuf);

impl Files {
    pub fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("gatekeeper-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
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

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn der_chain(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

pub fn der_key(pem: &str) -> rustls::pki_types::PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// The server side of TLS: its certificate, and the CA its clients' certificates must come
/// from, if it asks for one.
pub fn server_config(leaf: &(String, String), clients: Option<&Ca>) -> Arc<rustls::ServerConfig> {
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
pub struct TlsUpstream {
    pub port: u16,
    /// TCP connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// The HTTP version of every request that got through the handshake.
    pub versions: Arc<Mutex<Vec<http::Version>>>,
    ct: CancellationToken,
}

impl TlsUpstream {
    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// `http://127.0.0.1:PORT{path}`, when served without TLS.
    pub fn plain_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.ct.cancel();
    }
}

pub async fn serve_tls(router: axum::Router, tls: Arc<rustls::ServerConfig>) -> TlsUpstream {
    serve_counting(router, Some(tls)).await
}

/// Serves `router` on loopback, over TLS when given, counting the connections it accepts.
pub async fn serve_counting(
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
pub async fn mcp_upstream(tls: Arc<rustls::ServerConfig>) -> (TlsUpstream, RecordingServer) {
    let server = RecordingServer::new(vec![tool("ping", &[]), tool("headers", &[])], &[], &[]);
    let ct = CancellationToken::new();
    let router = axum::Router::new()
        .nest_service("/mcp", mcp_service(server.clone(), Mode::StatefulSse, &ct));
    (serve_tls(router, tls).await, server)
}

/// Starts the example gateway (built by `cargo test`) with `args` and extra environment
/// variables, and waits until it says it is ready (its stores set up); its first line on stdout
/// (the address it listens on) and the running child.
pub async fn example_gateway(
    args: &[&std::ffi::OsStr],
    env: &[(&str, &std::ffi::OsStr)],
) -> (tokio::process::Child, String) {
    start_example_gateway(args, env, true).await
}

/// [`example_gateway`], returning as soon as it listens when `wait_ready` is false.
pub async fn start_example_gateway(
    args: &[&std::ffi::OsStr],
    env: &[(&str, &std::ffi::OsStr)],
    wait_ready: bool,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join("examples")
        .join(format!("gateway{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "cargo test builds the example gateway: {}",
        bin.display()
    );
    let mut child = tokio::process::Command::new(&bin)
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), stdout.next_line())
        .await
        .expect("the gateway starts")
        .unwrap()
        .unwrap();
    if wait_ready {
        let ready = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            while let Ok(Some(l)) = stdout.next_line().await {
                if l.contains("gateway ready") {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(ready == Ok(true), "the gateway gets ready");
    }
    // The rest of its output is read (and dropped), so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    (child, line)
}

/// The port in a start-up line such as `... listening on https://127.0.0.1:PORT/mcp ...`.
pub fn port_in(line: &str) -> u16 {
    line.split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}
