//! The WebSocket listener's HTTP side: one hyper connection per accepted socket, answering
//! upgrades on the chat path with the chat (`handshake.rs`) and plain `GET`s with the browser
//! page (`page.rs`).
//!
//! Only an upgrade on the chat path becomes a chat connection; a page request takes no
//! connection slot. Request heads must arrive within the handshake timeout, and an idle
//! keep-alive connection is closed after it too, so a socket that says nothing holds little.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use chat_runtime::Handle;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::handshake::{Answer, PeerAddr, is_upgrade, text, upgrade};
use crate::page;
use crate::server::WsConfig;

/// Serves one accepted connection (a TCP socket, or a TLS stream on one) until the client is
/// done with it, the runtime shuts down, or it became a chat connection (which then lives on in
/// its own task).
pub(crate) async fn serve_socket<S>(
    stream: S,
    peer: SocketAddr,
    handle: Handle,
    config: Arc<WsConfig>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let closing = handle.closing();
    let head_timeout = config.handshake_timeout;
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(PeerAddr(peer));
        let (handle, config) = (handle.clone(), config.clone());
        async move { Ok::<_, Infallible>(respond(request, &handle, config).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        served = connection => {
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
        }
        () = closing.cancelled() => {}
    }
}

/// The answer to one request on the WebSocket listener.
pub(crate) async fn respond<B>(
    request: Request<B>,
    handle: &Handle,
    config: Arc<WsConfig>,
) -> Answer {
    let path = request.uri().path();
    if path == config.path {
        return upgrade(request, handle, config).await;
    }
    if is_upgrade(&request) {
        return text(
            StatusCode::NOT_FOUND,
            "no WebSocket endpoint here; try /chat",
        );
    }
    let head_only = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut answer = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD here");
            answer
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return answer;
        }
    };
    let resource = page::resource(path, &config.path);
    let body = if head_only {
        Bytes::new()
    } else {
        Bytes::from(resource.body.clone())
    };
    let mut answer = Response::new(Full::new(body));
    *answer.status_mut() = StatusCode::from_u16(resource.status).unwrap_or(StatusCode::NOT_FOUND);
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(resource.content_type),
    );
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(resource.body.len()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page::CSP),
    );
    answer
}
