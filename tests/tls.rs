//! TLS on both listeners (`--tls-cert`, `--tls-key`): the bundled server binary with a
//! throwaway certificate for `localhost`/127.0.0.1 made by rcgen, talked to by a tokio-rustls
//! client that trusts it; plain clients on the TLS ports; the start-up errors of bad flags and
//! files. The handshake timeout and the connection slots are checked in-process, on the
//! transports' `serve_tls`, where the timeout can be short.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use chat_engine::core::Config;
use chat_engine::runtime::{Runtime, RuntimeConfig};
use chat_engine::store::MemoryStore;
use chat_engine::tcp::TcpConfig;
use chat_engine::tls::rustls::pki_types::{CertificateDer, ServerName};
use chat_engine::tls::rustls::{self, ClientConfig, RootCertStore};
use chat_engine::tls::tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};
use chat_engine::tls::{TlsError, TlsFiles};
use chat_engine::ws::WsConfig;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use support::{PATIENCE, server_binary};

/// A throwaway certificate for `localhost` and 127.0.0.1, in PEM files in a temporary directory.
struct Certificate {
    dir: tempfile::TempDir,
    files: TlsFiles,
    der: CertificateDer<'static>,
}

fn certificate() -> Certificate {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen makes a certificate");
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, made.cert.pem()).unwrap();
    std::fs::write(&files.key, made.signing_key.serialize_pem()).unwrap();
    Certificate {
        dir,
        files,
        der: made.cert.der().clone(),
    }
}

/// A TLS client that trusts `certificate` only.
fn connector(certificate: &Certificate) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(certificate.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    certificate: &Certificate,
    addr: SocketAddr,
    name: &str,
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr)
        .await
        .expect("the server accepts TCP");
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(PATIENCE, connector(certificate).connect(name, tcp))
        .await
        .expect("the TLS handshake finishes in time")
        .expect("the TLS handshake succeeds")
}

/// The bundled server binary with TLS on both listeners; stderr is read line by line so that a
/// test can wait for a log line.
struct TlsServer {
    child: Child,
    ws: SocketAddr,
    line: SocketAddr,
    stdout: Vec<String>,
    log: mpsc::Receiver<String>,
}

impl TlsServer {
    fn start(certificate: &Certificate) -> TlsServer {
        let mut child = Command::new(server_binary())
            .args(["--memory", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(&certificate.files.cert)
            .arg("--tls-key")
            .arg(&certificate.files.key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stdout = lines(child.stdout.take().unwrap());
        let log = lines(child.stderr.take().unwrap());
        let mut announced = Vec::new();
        for _ in 0..2 {
            match stdout.recv_timeout(PATIENCE) {
                Ok(line) => announced.push(line),
                Err(error) => {
                    let _ = child.kill();
                    let log: Vec<String> = log.try_iter().collect();
                    panic!("no `listening` line ({error}); stderr:\n{}", log.join("\n"));
                }
            }
        }
        let ws = announced[0]
            .strip_prefix("listening wss://")
            .and_then(|rest| rest.strip_suffix("/chat"))
            .unwrap_or_else(|| panic!("`listening wss://HOST:PORT/chat`: {announced:?}"));
        let line = announced[1]
            .strip_prefix("listening tls://")
            .unwrap_or_else(|| panic!("`listening tls://HOST:PORT`: {announced:?}"));
        TlsServer {
            ws: ws.parse().expect("an address"),
            line: line.parse().expect("an address"),
            stdout: announced.clone(),
            child,
            log,
        }
    }

    /// Waits (at most [`PATIENCE`]) for a log line that contains every one of `parts`; returns
    /// the log lines up to it, it included.
    fn logged(&self, parts: &[&str]) -> Vec<String> {
        let deadline = std::time::Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let found = parts.iter().all(|part| line.contains(part));
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("no log line with {parts:?}; stderr:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of a child's pipe, read by a thread.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            // Keep draining when nobody listens, so that the server never blocks on a pipe.
            let _ = send.send(line);
        }
    });
    receive
}

/// Reads one line (at most [`PATIENCE`]), without its line end.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> String {
    let mut line = String::new();
    let read = tokio::time::timeout(PATIENCE, reader.read_line(&mut line))
        .await
        .expect("a line in time")
        .expect("the connection works");
    assert!(read > 0, "the connection closed");
    line.trim_end_matches(['\r', '\n']).to_owned()
}

/// Logs in as `name` on a TLS line connection: the prompt, the name, the welcome.
async fn line_login(
    stream: TlsStream<TcpStream>,
    name: &str,
) -> tokio::io::BufReader<TlsStream<TcpStream>> {
    let mut lines = tokio::io::BufReader::new(stream);
    assert_eq!(read_line(&mut lines).await, "Enter your name:");
    lines
        .get_mut()
        .write_all(format!("{name}\n").as_bytes())
        .await
        .unwrap();
    let welcome = read_line(&mut lines).await;
    assert!(
        welcome.starts_with(&format!("* Welcome, {name}!")),
        "a welcome: {welcome:?}"
    );
    lines
}

/// Everything a plain client gets back after sending `bytes` (and then, with `hang_up`, ending
/// its side), up to the server closing the connection (a reset counts as closed). Returns the
/// client's address, as the server's log names it, and what it got.
async fn plain_answer(addr: SocketAddr, bytes: &[u8], hang_up: bool) -> (SocketAddr, Vec<u8>) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("the server accepts TCP");
    let local = stream.local_addr().unwrap();
    stream.write_all(bytes).await.unwrap();
    if hang_up {
        stream.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server closed the plain connection in time"
    );
    (local, answer)
}

#[tokio::test]
async fn a_tls_line_client_gets_the_prompt_and_logs_in() {
    let certificate = certificate();
    let server = TlsServer::start(&certificate);
    let mut alice = line_login(
        tls_connect(&certificate, server.line, "localhost").await,
        "alice",
    )
    .await;
    // The certificate's IP address works as the server name too.
    let mut bob = line_login(
        tls_connect(&certificate, server.line, "127.0.0.1").await,
        "bob",
    )
    .await;
    assert_eq!(read_line(&mut alice).await, "* bob joined #general");
    bob.get_mut().write_all(b"hello over TLS\n").await.unwrap();
    let said = read_line(&mut alice).await;
    assert!(said.ends_with("#general <bob> hello over TLS"), "{said:?}");
}

#[tokio::test]
async fn the_websocket_port_serves_the_page_and_the_chat_over_tls() {
    let certificate = certificate();
    let server = TlsServer::start(&certificate);

    let mut page = tls_connect(&certificate, server.ws, "localhost").await;
    page.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, page.read_to_end(&mut answer))
        .await
        .expect("the page in time")
        .expect("the page, then close_notify");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("<!doctype html>"), "{answer}");

    let stream = tls_connect(&certificate, server.ws, "localhost").await;
    let url = format!("wss://localhost:{}/chat", server.ws.port());
    let (mut ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("the upgrade in time")
        .expect("the WebSocket upgrade succeeds");
    let login = json!({"type": "login", "name": "carol"}).to_string();
    ws.send(Message::text(login)).await.unwrap();
    let frame = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("a frame in time")
        .expect("a frame")
        .expect("a good frame");
    let frame: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(frame["type"], "welcome", "{frame}");
    assert_eq!(frame["name"], "carol", "{frame}");
}

#[tokio::test]
async fn plain_clients_on_tls_ports_get_nothing_back_and_the_server_goes_on() {
    let certificate = certificate();
    let server = TlsServer::start(&certificate);
    let http = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for (port, bytes) in [
        (server.line, &b"alice\n"[..]),
        (server.line, &http[..]),
        (server.ws, &http[..]),
        (server.ws, &b"\x00\xff garbage \x16"[..]),
    ] {
        let (peer, answer) = plain_answer(port, bytes, false).await;
        assert!(
            answer.is_empty(),
            "no prompt, no HTTP, nothing: {:?}",
            String::from_utf8_lossy(&answer)
        );
        server.logged(&["INFO", "does not speak TLS", &format!("peer={peer}")]);
    }
    // A client that connects and goes without a word is logged too.
    let (peer, answer) = plain_answer(server.line, b"", true).await;
    assert!(answer.is_empty());
    server.logged(&[
        "INFO",
        "closed the connection before",
        &format!("peer={peer}"),
    ]);

    let _alice = line_login(
        tls_connect(&certificate, server.line, "localhost").await,
        "alice",
    )
    .await;
    let mut page = tls_connect(&certificate, server.ws, "localhost").await;
    page.write_all(b"GET /app.js HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut status = String::new();
    let mut page = tokio::io::BufReader::new(page);
    tokio::time::timeout(PATIENCE, page.read_line(&mut status))
        .await
        .expect("an answer in time")
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
}

#[tokio::test]
async fn the_binary_announces_wss_and_tls_and_warns_of_nothing_on_loopback() {
    let certificate = certificate();
    let server = TlsServer::start(&certificate);
    assert_eq!(
        server.stdout,
        [
            format!("listening wss://127.0.0.1:{}/chat", server.ws.port()),
            format!("listening tls://127.0.0.1:{}", server.line.port()),
        ]
    );
    assert_ne!(server.ws.port(), 0);
    assert_ne!(server.line.port(), 0);
    // A listener's warning, if any, comes before its `listening` log line: none on loopback.
    let mut log = server.logged(&["listening", "wss://"]);
    log.extend(server.logged(&["listening", "tls://"]));
    assert!(log.iter().all(|line| !line.contains("WARN")), "{log:#?}");
}

/// Runs the binary with `args` (both listeners on port 0, memory store); returns its exit code
/// and standard error.
fn refused(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let output = Command::new(server_binary())
        .args(["--memory", "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.stdout.is_empty(),
        "no `listening` line: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    (output.status.code(), stderr)
}

fn os(path: &Path) -> &std::ffi::OsStr {
    path.as_os_str()
}

#[test]
fn one_tls_flag_without_the_other_is_refused() {
    let certificate = certificate();
    let (cert, key) = (&certificate.files.cert, &certificate.files.key);
    let (code, stderr) = refused(&["--tls-cert".as_ref(), os(cert)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--tls-cert needs --tls-key"), "{stderr}");
    let (code, stderr) = refused(&["--tls-key".as_ref(), os(key)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--tls-key needs --tls-cert"), "{stderr}");
}

#[test]
fn bad_pem_files_are_refused_at_start_naming_the_file() {
    let certificate = certificate();
    let (cert, key) = (&certificate.files.cert, &certificate.files.key);
    let dir = certificate.dir.path();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let broken = dir.join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.join("missing.pem");
    let cases: [(&PathBuf, &PathBuf, &[&str]); 5] = [
        (
            &garbage,
            key,
            &["TLS certificate file", "holds no certificate"],
        ),
        (cert, &garbage, &["TLS key file", "holds no private key"]),
        // A certificate where the key should be: no key in it.
        (cert, cert, &["TLS key file", "holds no private key"]),
        (&broken, key, &["TLS certificate file", "is not valid PEM"]),
        (&missing, key, &["cannot read the TLS certificate file"]),
    ];
    for (cert, key, expected) in cases {
        let (code, stderr) = refused(&[
            "--tls-cert".as_ref(),
            os(cert),
            "--tls-key".as_ref(),
            os(key),
        ]);
        assert_eq!(code, Some(1), "{stderr}");
        let named = if expected[0] == "TLS key file" {
            key
        } else {
            cert
        };
        assert!(
            stderr.contains(&named.display().to_string()),
            "names {}: {stderr}",
            named.display()
        );
        for part in expected {
            assert!(stderr.contains(part), "{part:?} in {stderr}");
        }
    }
}

#[test]
fn tls_files_load_and_say_which_file_is_wrong() {
    let certificate = certificate();
    assert!(certificate.files.load().is_ok());
    // A key that is not the certificate's.
    let other = rcgen::KeyPair::generate().unwrap();
    let stranger = certificate.dir.path().join("stranger.pem");
    std::fs::write(&stranger, other.serialize_pem()).unwrap();
    let mismatched = TlsFiles {
        cert: certificate.files.cert.clone(),
        key: stranger.clone(),
    };
    match mismatched.load() {
        Err(error @ TlsError::Rejected { .. }) => {
            let text = error.to_string();
            assert!(text.contains(&stranger.display().to_string()), "{text}");
        }
        other => panic!("a mismatched key is rejected: {other:?}"),
    }
    // One file holding both works.
    let both = certificate.dir.path().join("both.pem");
    let mut pem = std::fs::read(&certificate.files.cert).unwrap();
    pem.extend(std::fs::read(&certificate.files.key).unwrap());
    std::fs::write(&both, pem).unwrap();
    let combined = TlsFiles {
        cert: both.clone(),
        key: both,
    };
    assert!(combined.load().is_ok());
}

/// A runtime with both transports' `serve_tls` on loopback ports, in this process.
async fn in_process(
    certificate: &Certificate,
    limits: RuntimeConfig,
    handshake_timeout: Duration,
) -> (Runtime, SocketAddr, SocketAddr) {
    let runtime = Runtime::start(Config::default(), Arc::new(MemoryStore::new()), limits)
        .await
        .expect("the runtime starts");
    let acceptor = TlsAcceptor::from(certificate.files.load().expect("the files load"));
    let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let line = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ws_addr, line_addr) = (ws.local_addr().unwrap(), line.local_addr().unwrap());
    let ws_config = WsConfig {
        handshake_timeout,
        ..WsConfig::default()
    };
    let tcp_config = TcpConfig {
        handshake_timeout,
        ..TcpConfig::default()
    };
    let handle = runtime.handle();
    tokio::spawn(chat_engine::ws::serve_tls(
        ws,
        handle.clone(),
        ws_config,
        acceptor.clone(),
    ));
    tokio::spawn(chat_engine::tcp::serve_tls(
        line, handle, tcp_config, acceptor,
    ));
    (runtime, ws_addr, line_addr)
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_handshake_timeout() {
    let certificate = certificate();
    let timeout = Duration::from_millis(300);
    let (runtime, ws, line) = in_process(&certificate, RuntimeConfig::default(), timeout).await;
    for addr in [ws, line] {
        let started = tokio::time::Instant::now();
        let (_, answer) = plain_answer(addr, b"", false).await;
        assert!(answer.is_empty());
        assert!(
            started.elapsed() >= timeout,
            "closed by the timeout, not before"
        );
    }
    // A TLS client whose hello is cut short is closed by the same timeout.
    let mut partial = TcpStream::connect(line).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x50])
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(PATIENCE, partial.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_in_its_handshake_takes_no_connection_slot() {
    let certificate = certificate();
    let limits = RuntimeConfig {
        max_connections: 1,
        ..RuntimeConfig::default()
    };
    let (runtime, ws, line) = in_process(&certificate, limits, PATIENCE).await;
    // Silent sockets on both ports, stuck before their handshakes.
    let _silent = (
        TcpStream::connect(ws).await.unwrap(),
        TcpStream::connect(line).await.unwrap(),
    );
    // The one slot is still free for a client that finished its handshake.
    let _alice = line_login(tls_connect(&certificate, line, "localhost").await, "alice").await;
    runtime.shutdown().await.unwrap();
}

#[test]
fn help_lists_the_tls_options() {
    let output = Command::new(server_binary())
        .arg("--help")
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "--help exits 0");
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    for option in ["--tls-cert <FILE>", "--tls-key <FILE>"] {
        assert!(
            help.contains(option),
            "{option} is missing from --help:\n{help}"
        );
    }
}
