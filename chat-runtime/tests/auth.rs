//! Logins checked by an authenticator: off the core's task, in order, throttled after failures.

mod tokens;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::{AuthError, Command, Config, Identity, LoginAttempt, Ref, Secret};
use chat_runtime::{
    Authenticator, ClientInfo, Connection, Handle, LOGIN_FAILURES, LOGIN_LOCK, Runtime,
    RuntimeConfig,
};
use chat_store::MemoryStore;
use serde_json::Value;
use tokens::{Tokens, password_login, token_login};
use wire::{Json, recv};

async fn start(authenticator: Arc<dyn Authenticator>) -> Runtime {
    let store = Arc::new(MemoryStore::new());
    Runtime::start_with(
        Config::default(),
        store,
        RuntimeConfig::default(),
        authenticator,
    )
    .await
    .unwrap()
}

/// The next frame.
async fn next(conn: &mut Connection, pending: &mut Vec<Value>) -> Value {
    if pending.is_empty() {
        *pending = recv(conn).await;
    }
    pending.remove(0)
}

/// Sends `command` and returns the error code (or type) of the first answer.
async fn answer(conn: &mut Connection, command: Command) -> String {
    conn.send(command, None).await.unwrap();
    let frame = recv(conn).await.remove(0);
    match frame["type"].as_str() {
        Some("error") => frame["code"].as_str().unwrap().to_owned(),
        Some(kind) => kind.to_owned(),
        None => panic!("{frame}"),
    }
}

async fn guest(handle: &Handle, name: &str) -> Connection {
    let mut conn = handle.connect(Json).await.unwrap();
    conn.send(Command::login(name), None).await.unwrap();
    let mut frames = Vec::new();
    while !frames.iter().any(|f: &Value| f["type"] == "joined") {
        frames.extend(recv(&mut conn).await);
    }
    conn
}

fn say(room: &str, text: &str) -> Command {
    Command::Say {
        room: room.into(),
        text: text.into(),
    }
}

#[tokio::test]
async fn a_slow_check_holds_up_only_the_client_being_checked_and_its_frames_keep_their_order() {
    let tokens = Arc::new(Tokens::gated());
    let runtime = start(tokens.clone()).await;
    let handle = runtime.handle();
    let alice = guest(&handle, "alice").await;

    let mut carol = handle.connect(Json).await.unwrap();
    carol
        .send(token_login("carol"), Some(Ref::number(1)))
        .await
        .unwrap();
    let join = Command::join("rust");
    carol.send(join, Some(Ref::number(2))).await.unwrap();
    carol
        .send(say("rust", "first words"), Some(Ref::number(3)))
        .await
        .unwrap();

    // While carol's check waits, the chat goes on for everyone else.
    let mut bob = guest(&handle, "bob").await;
    alice.send(say("general", "hello bob"), None).await.unwrap();
    let mut seen = Vec::new();
    let heard = loop {
        let frame = next(&mut bob, &mut seen).await;
        if frame["type"] == "message" {
            break frame;
        }
    };
    assert_eq!(heard["text"], "hello bob");
    assert!(
        carol.try_next(&mut Vec::new()) == 0,
        "carol waits for her check"
    );

    tokens.gate.as_ref().unwrap().add_permits(1);
    let mut frames = Vec::new();
    while frames.len() < 4 {
        frames.extend(recv(&mut carol).await);
    }
    let order: Vec<(String, Value)> = frames
        .iter()
        .map(|f| (f["type"].as_str().unwrap().to_owned(), f["ref"].clone()))
        .collect();
    assert_eq!(
        order,
        [
            ("welcome".into(), Value::from(1)),
            ("joined".into(), Value::Null),
            ("joined".into(), Value::from(2)),
            ("message".into(), Value::from(3)),
        ]
    );
    assert_eq!(frames[0]["account"], true);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_logins_lock_the_name_and_locked_logins_are_not_checked() {
    let tokens = Arc::new(Tokens::default());
    let runtime = start(tokens.clone()).await;
    let handle = runtime.handle();
    let mut guesser = handle.connect(Json).await.unwrap();
    for _ in 0..LOGIN_FAILURES {
        let code = answer(&mut guesser, password_login("alice", "guess")).await;
        assert_eq!(code, "auth_failed");
    }
    assert_eq!(tokens.calls(), LOGIN_FAILURES);
    let code = answer(&mut guesser, password_login("alice", "pw:alice")).await;
    assert_eq!(
        code, "rate_limited",
        "even the right password, while locked"
    );
    assert_eq!(tokens.calls(), LOGIN_FAILURES, "not checked");
    assert_eq!(handle.metrics().logins_throttled, 1);
    assert_eq!(handle.metrics().logins_failed, LOGIN_FAILURES as u64);

    // Other names, and guests, are not held up by alice's lock.
    let mut other = handle.connect(Json).await.unwrap();
    assert_eq!(
        answer(&mut other, password_login("bob", "pw:bob")).await,
        "welcome"
    );
    assert_eq!(
        answer(&mut guesser, Command::login("dora")).await,
        "welcome"
    );

    tokio::time::advance(LOGIN_LOCK + Duration::from_secs(1)).await;
    let mut later = handle.connect(Json).await.unwrap();
    assert_eq!(
        answer(&mut later, password_login("Alice", "pw:alice")).await,
        "welcome",
        "the lock ends"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_address_that_fails_with_many_names_is_locked_for_all_of_them() {
    let tokens = Arc::new(Tokens::default());
    let runtime = start(tokens.clone()).await;
    let handle = runtime.handle();
    let here: SocketAddr = "127.0.0.9:40000".parse().unwrap();
    let there: SocketAddr = "127.0.0.10:40000".parse().unwrap();
    let mut guesser = handle
        .connect_from(Json, ClientInfo::from_addr(here))
        .await
        .unwrap();
    for n in 0..LOGIN_FAILURES {
        let code = answer(&mut guesser, password_login(&format!("u{n}"), "guess")).await;
        assert_eq!(code, "auth_failed");
    }
    let code = answer(&mut guesser, token_login("someone")).await;
    assert_eq!(code, "rate_limited", "tokens from a locked address too");
    // Another connection from the same address is locked as well; another address is not.
    let mut same = handle
        .connect_from(Json, ClientInfo::from_addr(here))
        .await
        .unwrap();
    assert_eq!(
        answer(&mut same, password_login("carol", "pw:carol")).await,
        "rate_limited"
    );
    let mut elsewhere = handle
        .connect_from(Json, ClientInfo::from_addr(there))
        .await
        .unwrap();
    assert_eq!(
        answer(&mut elsewhere, password_login("carol", "pw:carol")).await,
        "welcome"
    );
    let seen = tokens.seen.lock().unwrap().clone();
    assert_eq!(
        seen.last(),
        Some(&Some(there)),
        "the authenticator sees the address"
    );
    runtime.shutdown().await.unwrap();
}

/// An authenticator that fails the way a buggy app's might.
struct Broken;

#[async_trait]
impl Authenticator for Broken {
    async fn authenticate(
        &self,
        attempt: &LoginAttempt,
        _client: &ClientInfo,
    ) -> Result<Identity, AuthError> {
        match &attempt.name {
            Some(name) if name.as_str() == "panic" => panic!("the app's bug"),
            _ => Err(AuthError::Unavailable),
        }
    }
}

#[tokio::test]
async fn a_panicking_authenticator_answers_unavailable_and_the_client_may_go_on() {
    let runtime = start(Arc::new(Broken)).await;
    let handle = runtime.handle();
    let mut conn = handle.connect(Json).await.unwrap();
    let code = answer(&mut conn, password_login("panic", "whatever it is")).await;
    assert_eq!(code, "unavailable");
    assert_eq!(answer(&mut conn, Command::login("guest")).await, "welcome");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_authenticator_that_registers_nobody_refuses_register() {
    let runtime = start(Arc::new(Tokens::default())).await;
    let handle = runtime.handle();
    let mut alice = guest(&handle, "alice").await;
    let register = Command::Register {
        password: Secret::new("correct horse"),
    };
    alice.send(register, Some(Ref::number(9))).await.unwrap();
    let frame = recv(&mut alice).await.remove(0);
    assert_eq!(frame["code"], "auth_failed");
    assert_eq!(frame["ref"], 9);
    assert!(frame["message"].as_str().unwrap().contains("register"));
    runtime.shutdown().await.unwrap();
}

// On the paused clock: the store's recovery back-off passes without waiting for it.
#[tokio::test(start_paused = true)]
async fn a_registration_the_store_refuses_is_unavailable_and_each_frame_behind_it_is_answered() {
    let store = chat_store::FailingStore::new(Arc::new(MemoryStore::new()));
    let switch = store.switch();
    let tokens = Arc::new(Tokens {
        registers: true,
        ..Tokens::default()
    });
    let runtime = Runtime::start_with(
        Config::default(),
        Arc::new(store),
        Default::default(),
        tokens,
    )
    .await
    .unwrap();
    let handle = runtime.handle();
    let mut alice = guest(&handle, "alice").await;
    switch.fail_appends(true);
    let register = Command::Register {
        password: Secret::new("correct horse"),
    };
    alice
        .send(register.clone(), Some(Ref::number(1)))
        .await
        .unwrap();
    alice
        .send(
            say("general", "behind the registration"),
            Some(Ref::number(2)),
        )
        .await
        .unwrap();
    let mut answers = Vec::new();
    while answers.len() < 2 {
        answers.extend(recv(&mut alice).await);
    }
    let got: Vec<(Value, Value)> = answers
        .iter()
        .map(|f| (f["code"].clone(), f["ref"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (Value::from("unavailable"), Value::from(1)),
            (Value::from("unavailable"), Value::from(2))
        ]
    );

    switch.fail_appends(false);
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(attempts < 100, "the runtime never served again");
        alice
            .send(register.clone(), Some(Ref::number(3)))
            .await
            .unwrap();
        let frame = recv(&mut alice).await.remove(0);
        if frame["type"] == "registered" {
            break;
        }
        assert_eq!(frame["code"], "unavailable", "{frame}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    runtime.shutdown().await.unwrap();
}
