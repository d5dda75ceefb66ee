//! The browser client: a static page (HTML, CSS and one script, embedded in the binary) that the
//! WebSocket listener serves on plain HTTP `GET`s, so `http://HOST:PORT/` is a chat client while
//! upgrades on `/chat` work as before.
//!
//! Before the WebSocket handshake, `serve_if_page` peeks at the request head without consuming
//! it. A complete `GET` (or `HEAD`) head with no `Upgrade` header, for any path but the WebSocket
//! path, is answered here: the page's three files, or 404. Everything else (an upgrade, another
//! method, a head that is not HTTP or is too large) is left untouched for the handshake, which
//! answers it as it always did. The head is bounded in size ([`MAX_HEAD`]) and the whole exchange
//! in time (the configured handshake timeout, and the login timeout: like any connection, a page
//! request holds a place among the runtime's connections until it is answered).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::server::WsConfig;

/// The longest request head looked at, in bytes. A larger one is left to the handshake.
pub const MAX_HEAD: usize = 8192;

/// The most header lines looked at in a head; more are left to the handshake.
const MAX_HEADERS: usize = 64;

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const APP_CSS: &str = include_str!("../static/app.css");

/// What the page script reads to find the WebSocket path; replaced with [`WsConfig::path`].
const PATH_PLACEHOLDER: &str = "{{WS_PATH}}";

/// The browser's rules for the page: only its own files, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Whether [`serve_if_page`] dealt with the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// Answered (or dropped: closed early, too slow); the connection is finished.
    Done,
    /// Not a page request: go on with the WebSocket handshake; nothing was consumed.
    Handshake,
}

/// A file of the page, or the 404 answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// The HTTP status code (200 or 404).
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// What a page request for `path` gets, with `ws_path` (the WebSocket path) filled into the page.
pub fn resource(path: &str, ws_path: &str) -> Resource {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let ok = |content_type, body: &str| Resource {
        status: 200,
        content_type,
        body: body.to_owned(),
    };
    match path {
        "/" | "/index.html" => Resource {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: INDEX_HTML.replace(PATH_PLACEHOLDER, &html_attribute(ws_path)),
        },
        "/app.js" => ok("text/javascript; charset=utf-8", APP_JS),
        "/app.css" => ok("text/css; charset=utf-8", APP_CSS),
        _ => Resource {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: "not found; the chat page is at /\n".to_owned(),
        },
    }
}

fn html_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What the bytes peeked so far are.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A complete page request: method `HEAD` or `GET`, the path, the head's length in bytes.
    Page {
        head_only: bool,
        path: String,
        len: usize,
    },
    /// Not (yet) complete: peek again once more bytes are in.
    Partial,
    /// For the handshake.
    Handshake,
}

fn classify(bytes: &[u8], ws_path: &str) -> Head {
    // Decide early when the method alone says it is not for us.
    let starts = |method: &[u8]| {
        let n = bytes.len().min(method.len());
        bytes[..n] == method[..n]
    };
    if !(starts(b"GET ") || starts(b"HEAD ")) {
        return Head::Handshake;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Handshake,
    };
    let head_only = match request.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Head::Handshake,
    };
    let upgrade = request
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade"));
    let path = request.path.unwrap_or_default();
    let route = path.split(['?', '#']).next().unwrap_or_default();
    if upgrade || route == ws_path {
        return Head::Handshake;
    }
    Head::Page {
        head_only,
        path: path.to_owned(),
        len,
    }
}

/// Answers a plain `GET` for the page on `stream`, or leaves the stream untouched for the
/// WebSocket handshake. Never panics on what the client sends; bounded by [`MAX_HEAD`] bytes and
/// the configured handshake timeout.
pub(crate) async fn serve_if_page(stream: &mut TcpStream, config: &WsConfig) -> Served {
    let deadline = Instant::now() + config.handshake_timeout;
    let mut buffer = vec![0u8; MAX_HEAD];
    let mut pause = Duration::from_millis(1);
    let (head_only, path, len) = loop {
        let peeked = match tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Served::Done,
            Ok(Ok(n)) => n,
            // Too slow to send a request head: the handshake would time out just the same.
            Err(_) => return Served::Done,
        };
        match classify(&buffer[..peeked], &config.path) {
            Head::Handshake => return Served::Handshake,
            Head::Partial if peeked == buffer.len() => return Served::Handshake,
            Head::Partial => {
                // `peek` returns at once while any byte is waiting, so wait a little for the rest
                // of the head (it nearly always arrives in the first segment).
                if Instant::now() + pause >= deadline {
                    return Served::Done;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Head::Page {
                head_only,
                path,
                len,
            } => break (head_only, path, len),
        }
    };
    let resource = resource(&path, &config.path);
    let answer = async {
        // Consume the head, so that closing does not reset the connection under the answer.
        stream.read_exact(&mut buffer[..len]).await?;
        stream.write_all(&response_head(&resource)).await?;
        if !head_only {
            stream.write_all(resource.body.as_bytes()).await?;
        }
        stream.shutdown().await
    };
    if let Ok(Err(error)) = tokio::time::timeout_at(deadline, answer).await {
        tracing::debug!(%error, "answering a page request failed");
    }
    Served::Done
}

fn response_head(resource: &Resource) -> Vec<u8> {
    let reason = if resource.status == 200 {
        "OK"
    } else {
        "Not Found"
    };
    format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\nContent-Security-Policy: {CSP}\r\n\
         Connection: close\r\n\r\n",
        resource.status,
        resource.content_type,
        resource.body.len(),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn serves_the_three_files_and_404_for_the_rest() {
        let index = resource("/", "/chat");
        assert_eq!(index.status, 200);
        assert!(index.body.contains(r#"content="/chat""#));
        assert!(!index.body.contains(PATH_PLACEHOLDER));
        assert_eq!(resource("/index.html?x=1", "/chat").status, 200);
        assert_eq!(
            resource("/app.js", "/chat").content_type,
            "text/javascript; charset=utf-8"
        );
        assert_eq!(resource("/app.css", "/chat").status, 200);
        for path in [
            "/favicon.ico",
            "/app.js/",
            "/../etc/passwd",
            "/static/app.js",
            "",
        ] {
            assert_eq!(resource(path, "/chat").status, 404, "{path}");
        }
        assert!(resource("/", "/a\"<b>").body.contains("/a&quot;&lt;b&gt;"));
    }

    #[test]
    fn only_complete_plain_gets_are_pages() {
        let page = |head: &str| classify(head.as_bytes(), "/chat");
        assert_eq!(
            page("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Head::Page {
                head_only: false,
                path: "/".into(),
                len: 27
            }
        );
        assert!(matches!(
            page("HEAD /app.css HTTP/1.1\r\n\r\n"),
            Head::Page {
                head_only: true,
                ..
            }
        ));
        assert_eq!(page("GET / HTTP/1.1\r\nHost: x\r\n"), Head::Partial);
        assert_eq!(page("GE"), Head::Partial);
        assert_eq!(page("HEA"), Head::Partial);
        let upgrade =
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(page(upgrade), Head::Handshake);
        assert_eq!(page("GET /chat HTTP/1.1\r\n\r\n"), Head::Handshake);
        assert_eq!(page("GET /chat?v=1 HTTP/1.1\r\n\r\n"), Head::Handshake);
        assert_eq!(page("POST / HTTP/1.1\r\n\r\n"), Head::Handshake);
        assert_eq!(page("\x16\x03\x01\x02\x00"), Head::Handshake);
        assert_eq!(
            page("GET / HTTP/1.1\r\nbad header\r\n\r\n"),
            Head::Handshake
        );
    }

    proptest! {
        #[test]
        fn classifying_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = classify(&bytes, "/chat");
        }

        #[test]
        fn classifying_get_heads_never_panics(rest in "\\PC{0,200}") {
            let _ = classify(format!("GET {rest}").as_bytes(), "/chat");
        }
    }
}
