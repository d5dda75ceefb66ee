//! The pager (`--pager`) of a `chat-load` run against a real server in this process: it reads
//! the room's stored history during the load, and `--pager-rate` caps how many pages it asks.

use std::sync::Arc;

use chat_core::{Command, Config, Event};
use chat_runtime::{Outgoing, Runtime, RuntimeConfig};
use chat_store::MemoryStore;
use chat_transport_ws::{WsConfig, serve};
use tokio::net::TcpListener;

mod support;

const LOAD: &str = env!("CARGO_BIN_EXE_chat-load");

/// Messages put into `#archive` before the run: more than one page (500) of history.
const STORED: usize = 600;

/// A server on a free loopback port whose `#archive` holds [`STORED`] messages; its WebSocket
/// URL.
async fn server_with_history() -> (String, Runtime) {
    let runtime = Runtime::start(
        Config::default(),
        Arc::new(MemoryStore::new()),
        RuntimeConfig::default(),
    )
    .await
    .expect("the runtime starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let url = format!("ws://{}/chat", listener.local_addr().expect("bound"));
    tokio::spawn(serve(listener, runtime.handle(), WsConfig::default()));

    let archivist = runtime.handle().connect_local().await.expect("attaches");
    archivist
        .send(Command::login("archivist"), None)
        .await
        .expect("the runtime runs");
    archivist
        .send(Command::join("archive"), None)
        .await
        .expect("the runtime runs");
    let mut echoed = 0;
    let mut events = Vec::new();
    for n in 0..STORED {
        let say = Command::Say {
            room: "archive".into(),
            text: format!("stored {n}"),
        };
        archivist.send(say, None).await.expect("the runtime runs");
    }
    // Every message is in the history once its echo is back.
    while echoed < STORED {
        assert!(matches!(
            archivist.next(&mut events).await,
            Outgoing::Frames
        ));
        echoed += events
            .drain(..)
            .filter(|d| matches!(&*d.event, Event::Message(m) if m.room.as_str() == "archive"))
            .count();
    }
    (url, runtime)
}

#[tokio::test]
async fn a_paced_pager_reads_history_and_asks_no_more_than_its_rate() {
    let (url, _runtime) = server_with_history().await;
    // Two seconds at 4 pages a second: asks at 0, 0.25, ... 1.75 s, eight at most.
    let output = tokio::process::Command::new(LOAD)
        .args(["--ws", &url, "--json", "--duration", "2"])
        .args(["--receivers", "5", "--senders", "2", "--rate", "20"])
        .args(["--pager", "archive", "--pager-rate", "4"])
        .output()
        .await
        .expect("chat-load runs");
    let report = support::report(&output);
    let count = |field: &str| support::count(&report, field);
    let pages = count("pager_pages");
    assert!((1..=8).contains(&pages), "{pages} pages in 2 s at 4/s");
    // Newest first: 500, then the 100 left, then an empty page and round again.
    let messages = count("pager_messages");
    assert!(messages >= 500 && messages <= 500 * pages, "{report}");
    assert_eq!(count("pager_refused"), 0, "{report}");
    assert_eq!(report["pager_room"], "archive");
    assert_eq!(count("lost"), 0, "{report}");
}
