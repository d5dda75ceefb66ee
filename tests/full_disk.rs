//! The bundled server with its JSON store on a file system that fills up: senders get
//! `unavailable`, nobody receives what was not stored, and the server serves again by itself once
//! space is freed. Needs root to mount a small tmpfs; elsewhere it says it was skipped.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chat_engine::client::{Incoming, WsClient};
use chat_engine::core::{Command as ChatCommand, ErrorCode, Event, Ref};
use support::{PATIENCE, ServerProcess};

/// A tmpfs mounted for one test, unmounted when dropped (also when the test panics).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if !Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success())
        {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// The next event `client` receives, with its ref.
async fn next(client: &mut WsClient) -> (Event, Option<Ref>) {
    match tokio::time::timeout(PATIENCE, client.recv()).await {
        Ok(Ok(Incoming::Event { event, reference })) => (event, reference),
        other => panic!("expected an event: {other:?}"),
    }
}

async fn login(url: &str, name: &str) -> WsClient {
    let mut client = WsClient::connect(url).await.unwrap();
    let login = ChatCommand::login(name);
    client.send(&login, None).await.unwrap();
    while !matches!(next(&mut client).await.0, Event::Joined { .. }) {}
    client
}

/// Says `text` in `general` and returns the id it got, or the error code it was refused with.
async fn say(client: &mut WsClient, text: &str, n: u64) -> Result<u64, ErrorCode> {
    let say = ChatCommand::Say {
        room: "general".into(),
        text: text.into(),
    };
    client.send(&say, Some(&Ref::number(n))).await.unwrap();
    loop {
        match next(client).await {
            (Event::Message(m), Some(_)) => return Ok(m.id.get()),
            (Event::Error { code, .. }, Some(_)) => return Err(code),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_unavailable_and_the_server_recovers_when_space_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let mount_point = tmp.path().join("mnt");
    fs::create_dir(&mount_point).unwrap();
    let _tmpfs = match Tmpfs::mount(&mount_point, "512k") {
        Ok(mounted) => mounted,
        Err(why) => {
            println!("skipped: cannot mount a small tmpfs to fill ({why})");
            return;
        }
    };
    let data = mount_point.join("data");
    let server = ServerProcess::start(&["--data", data.to_str().unwrap(), "--rate-limit", "0"]);
    let mut alice = login(&server.url, "alice").await;
    let mut bob = login(&server.url, "bob").await;
    // Space to free later.
    let filler = mount_point.join("filler");
    fs::write(&filler, vec![0u8; 128 * 1024]).unwrap();

    // Fill the disk with 2 KB messages until the store refuses one.
    let text = "x".repeat(2000);
    let mut stored = Vec::new();
    let refused = loop {
        assert!(stored.len() < 1000, "512 KiB fill up within 1000 messages");
        match say(&mut alice, &text, stored.len() as u64).await {
            Ok(id) => stored.push(id),
            Err(code) => break code,
        }
    };
    assert_eq!(refused, ErrorCode::Unavailable);
    // Refused again at once while the disk is full; pings are still answered.
    assert_eq!(
        say(&mut alice, "still full", 9999).await,
        Err(ErrorCode::Unavailable)
    );
    alice.send(&ChatCommand::Ping, None).await.unwrap();
    while !matches!(next(&mut alice).await.0, Event::Pong) {}

    // Bob got exactly the stored messages, in order.
    let mut seen = Vec::new();
    while seen.len() < stored.len() {
        if let (Event::Message(m), _) = next(&mut bob).await {
            seen.push(m.id.get());
        }
    }
    assert_eq!(seen, stored);

    // Free the space: the server recovers by itself (it retries with back-off, up to 5 s).
    fs::remove_file(&filler).unwrap();
    let mut attempts = 0;
    let recovered = loop {
        attempts += 1;
        assert!(
            attempts <= 100,
            "the server did not serve again after space was freed"
        );
        match say(&mut alice, "back", 10_000 + attempts).await {
            Ok(id) => break id,
            Err(code) => assert_eq!(code, ErrorCode::Unavailable),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(recovered > *stored.last().unwrap(), "ids never go back");
    // The next message bob sees is the one said after recovery: nothing unstored reached him.
    loop {
        if let (Event::Message(m), _) = next(&mut bob).await {
            assert_eq!(m.id.get(), recovered);
            assert_eq!(m.text.as_str(), "back");
            break;
        }
    }
    drop(server);
}
