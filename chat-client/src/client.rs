//! [`WsClient`]: a small async client for the WebSocket transport, for tests, bots and the CLI.
//! It speaks the JSON of [`chat_protocol::json`]'s client half.

use chat_core::{Command, Event, Ref};
use chat_protocol::json::{ServerFrame, decode_server_frame, encode_command};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Why the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection or handshake failed, or the socket broke.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// The server sent something that is not a protocol frame.
    #[error("the server sent a frame that is not valid JSON: {0}")]
    BadFrame(#[from] serde_json::Error),
}

/// What the server sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// A server frame, with the `ref` it carried.
    Event {
        /// The event.
        event: Event,
        /// The `ref` of the command it answers.
        reference: Option<Ref>,
    },
    /// A JSON frame of a type this client does not know (a newer server); kept whole.
    Unknown(Value),
    /// The server closed the connection.
    Closed {
        /// The close code (1000 normal, 1001 going away, 1008 policy, 1009 too big), if any.
        code: Option<u16>,
        /// The reason the server gave.
        reason: String,
    },
}

/// A connected client.
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects to `url`, e.g. `ws://127.0.0.1:8765/chat`.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        if let MaybeTlsStream::Plain(stream) = ws.get_ref() {
            let _ = stream.set_nodelay(true);
        }
        Ok(WsClient { ws })
    }

    /// Sends a command, with an optional `ref`.
    pub async fn send(
        &mut self,
        command: &Command,
        reference: Option<&Ref>,
    ) -> Result<(), ClientError> {
        self.send_text(&encode_command(command, reference)).await
    }

    /// Sends any text frame as it is (for tests of malformed input).
    pub async fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends a raw WebSocket message (binary frames, pings).
    pub async fn send_message(&mut self, message: Message) -> Result<(), ClientError> {
        self.ws.send(message).await?;
        Ok(())
    }

    /// The next server frame (pings are answered and skipped), or how the connection closed.
    pub async fn recv(&mut self) -> Result<Incoming, ClientError> {
        loop {
            let message = match self.ws.next().await {
                Some(Ok(message)) => message,
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => {
                    return Ok(Incoming::Closed {
                        code: None,
                        reason: String::new(),
                    });
                }
                Some(Err(error)) => return Err(error.into()),
            };
            match message {
                Message::Text(text) => return parse(text.as_str()),
                Message::Close(frame) => {
                    return Ok(Incoming::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    });
                }
                Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Closes the connection cleanly.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.ws.close(None).await?;
        while let Some(Ok(_)) = self.ws.next().await {}
        Ok(())
    }
}

/// Splits a server frame into its event and `ref`.
fn parse(text: &str) -> Result<Incoming, ClientError> {
    Ok(match decode_server_frame(text)? {
        ServerFrame::Event { event, reference } => Incoming::Event { event, reference },
        ServerFrame::Unknown(value) => Incoming::Unknown(value),
    })
}
