//! The WebSocket opening handshake over HTTP (RFC 6455, section 4.2): the checks on the
//! client's upgrade request and the `101 Switching Protocols` answer.
//!
//! It works on plain `http` requests, so the bundled listener (hyper) and an embedder's axum
//! router answer upgrades with the same code: [`upgrade`] checks the request, attaches a
//! connection to the runtime (or answers 503 when the server is full), and once the HTTP
//! library hands over the upgraded stream, runs the chat on it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use chat_runtime::{ClientInfo, ConnectError, Handle};
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::server::WsConfig;

/// The client's address, as the listener that accepted it knows it: a request extension, so
/// the handshake can tell the runtime who is connecting (the login throttle counts by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// An HTTP answer with a small, complete body.
pub(crate) type Answer = Response<Full<Bytes>>;

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: &str) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

/// Whether `request` asks for a WebSocket (an `Upgrade: websocket` header).
pub(crate) fn is_upgrade<B>(request: &Request<B>) -> bool {
    header_has(request.headers(), header::UPGRADE, "websocket")
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// Answers a WebSocket upgrade request for the chat: checks it, attaches a connection to the
/// runtime behind `handle` (503 when the server is full or shutting down), and spawns the
/// connection's task, which starts once the HTTP library hands over the upgraded stream.
pub async fn upgrade<B>(mut request: Request<B>, handle: &Handle, config: Arc<WsConfig>) -> Answer {
    let headers = request.headers();
    if request.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET",
        );
    }
    if !is_upgrade(&request) || !header_has(headers, header::CONNECTION, "upgrade") {
        let mut answer = text(
            StatusCode::UPGRADE_REQUIRED,
            "this is the chat's WebSocket endpoint; connect with a WebSocket client",
        );
        answer
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return answer;
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        let mut answer = text(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only");
        answer.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return answer;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key");
    };
    let accept = derive_accept_key(key.as_bytes());
    let client = ClientInfo {
        addr: request.extensions().get::<PeerAddr>().map(|peer| peer.0),
        headers: headers.clone(),
    };
    let connection = match crate::session::connect_from(handle, client).await {
        Ok(connection) => connection,
        Err(ConnectError::TooManyConnections) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is full; try again later",
            );
        }
        Err(ConnectError::ShuttingDown) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            );
        }
    };
    let upgraded = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        // The login timeout runs from the attach: a client that never completes the upgrade
        // is closed like one that never logs in.
        let conn = connection.id();
        let upgraded = tokio::select! {
            upgraded = upgraded => upgraded,
            _ = connection.closed() => return,
        };
        match upgraded {
            Ok(upgraded) => {
                tracing::debug!(%conn, "WebSocket client attached");
                crate::session::run_upgraded(upgraded, connection, &config).await;
                tracing::debug!(%conn, "WebSocket client detached");
            }
            Err(error) => tracing::debug!(%conn, %error, "the WebSocket upgrade failed"),
        }
    });
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = answer.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    answer
}
