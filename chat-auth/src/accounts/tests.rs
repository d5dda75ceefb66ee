use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_core::Record;
use chat_store::MemoryStore;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

const SECRET: &[u8] = b"the server's token secret, long enough";
const PASSWORD: &str = "correct horse battery";

fn name(name: &str) -> UserName {
    UserName::parse(name).unwrap()
}

fn store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new())
}

fn login(name_: Option<&str>, password: Option<&str>, token: Option<&str>) -> LoginAttempt {
    LoginAttempt {
        name: name_.map(name),
        password: password.map(Secret::new),
        token: token.map(Secret::new),
    }
}

async fn authenticate(accounts: &Accounts, attempt: LoginAttempt) -> Result<Identity, AuthError> {
    accounts
        .authenticate(&attempt, &ClientInfo::default())
        .await
}

/// Stores `name` as an account with `hash`.
async fn put_account(store: &MemoryStore, name_: &str, hash: Option<PasswordHash>) {
    store
        .append(&[Record::Account(Account {
            name: name(name_),
            hash,
        })])
        .await
        .unwrap();
}

/// Registers `name_` with `password`, as the runtime does: hash, then store.
async fn register(accounts: &Accounts, store: &MemoryStore, name_: &str, password: &str) {
    let hash = accounts
        .hash_password(&name(name_), &Secret::new(password))
        .await
        .unwrap();
    put_account(store, name_, Some(hash)).await;
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token signed with `secret` and `alg`, made by the jwt crate itself.
fn token(secret: &[u8], alg: Algorithm, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn valid_token(sub: &str) -> String {
    token(
        SECRET,
        Algorithm::HS256,
        json!({"sub": sub, "exp": now() + 600}),
    )
}

fn with_tokens() -> (Accounts, Arc<MemoryStore>) {
    let store = store();
    let accounts = Accounts::new(store.clone()).with_jwt_secret(SECRET.to_vec());
    (accounts, store)
}

/// Base64url without padding, for tokens built by hand.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[test]
fn base64url_matches_the_jwt_crate() {
    // The header the jwt crate writes for HS256, whose encoding everyone knows.
    assert_eq!(
        base64url(br#"{"typ":"JWT","alg":"HS256"}"#),
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9"
    );
    assert_eq!(base64url(b"a"), "YQ");
    assert_eq!(base64url(b"ab"), "YWI");
    assert_eq!(base64url(b"\xfb\xff"), "-_8");
}

/// A token assembled by hand: `header` and `claims` encoded as given, then `signature`.
fn hand_made_token(
    header: serde_json::Value,
    claims: serde_json::Value,
    signature: &str,
) -> String {
    format!(
        "{}.{}.{signature}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    )
}

// Passwords.

#[tokio::test]
async fn a_password_login_gives_the_account_spelled_as_stored() {
    let store = store();
    let accounts = Accounts::new(store.clone());
    register(&accounts, &store, "Alice", PASSWORD).await;
    for asked in ["ALICE", "alice", "Alice"] {
        assert_eq!(
            authenticate(&accounts, login(Some(asked), Some(PASSWORD), None)).await,
            Ok(Identity::Account(name("Alice"))),
            "{asked}"
        );
        assert_eq!(
            authenticate(&accounts, login(Some(asked), Some(PASSWORD), None))
                .await
                .unwrap()
                .name()
                .as_str(),
            "Alice"
        );
    }
}

#[tokio::test]
async fn a_wrong_password_fails() {
    let store = store();
    let accounts = Accounts::new(store.clone());
    register(&accounts, &store, "Alice", PASSWORD).await;
    for wrong in [
        "correct horse battery ",
        "Correct horse battery",
        "hunter2hunter2",
    ] {
        assert_eq!(
            authenticate(&accounts, login(Some("alice"), Some(wrong), None)).await,
            Err(AuthError::Failed),
            "{wrong}"
        );
    }
}

#[tokio::test]
async fn a_password_for_a_name_without_an_account_fails() {
    let store = store();
    let accounts = Accounts::new(store.clone());
    register(&accounts, &store, "Alice", PASSWORD).await;
    assert_eq!(
        authenticate(&accounts, login(Some("bob"), Some(PASSWORD), None)).await,
        Err(AuthError::Failed)
    );
}

#[tokio::test]
async fn a_password_for_an_account_made_by_a_token_fails() {
    let store = store();
    let accounts = Accounts::new(store.clone());
    put_account(&store, "Carol", None).await;
    assert_eq!(
        authenticate(&accounts, login(Some("carol"), Some(PASSWORD), None)).await,
        Err(AuthError::Failed)
    );
}

#[tokio::test]
async fn a_stored_hash_argon2_cannot_use_fails_the_login() {
    let store = store();
    let accounts = Accounts::new(store.clone());
    put_account(&store, "Dave", Some(PasswordHash::new("not a PHC string"))).await;
    put_account(
        &store,
        "Erin",
        Some(PasswordHash::new(
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        )),
    )
    .await;
    for who in ["dave", "erin"] {
        assert_eq!(
            authenticate(&accounts, login(Some(who), Some(PASSWORD), None)).await,
            Err(AuthError::Failed),
            "{who}"
        );
    }
}

#[tokio::test]
async fn hashes_are_salted_argon2id_phc_strings_without_the_password() {
    let accounts = Accounts::new(store());
    let alice = name("alice");
    let first = accounts
        .hash_password(&alice, &Secret::new(PASSWORD))
        .await
        .unwrap();
    let second = accounts
        .hash_password(&alice, &Secret::new(PASSWORD))
        .await
        .unwrap();
    for hash in [&first, &second] {
        let phc = hash.as_str();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains(PASSWORD) && !phc.contains("horse"), "{phc}");
        let parsed = password_hash::PasswordHash::new(phc).unwrap();
        assert!(parsed.salt.is_some() && parsed.hash.is_some());
    }
    assert_ne!(first, second, "each hash has its own salt");
    // Both verify, each with its own salt.
    for hash in [&first, &second] {
        assert!(matches!(
            verify(&Argon2::default(), &Secret::new(PASSWORD), hash.as_str()),
            Verdict::Match
        ));
    }
}

#[tokio::test]
async fn the_dummy_hash_costs_what_a_real_one_does() {
    let accounts = Accounts::new(store());
    let real = accounts
        .hash_password(&name("alice"), &Secret::new(PASSWORD))
        .await
        .unwrap();
    let real = password_hash::PasswordHash::new(real.as_str()).unwrap();
    let dummy = password_hash::PasswordHash::new(DUMMY_HASH).unwrap();
    assert_eq!(dummy.algorithm, real.algorithm);
    assert_eq!(dummy.version, real.version);
    assert_eq!(dummy.params, real.params);
    assert_eq!(
        dummy.salt.unwrap().len(),
        real.salt.unwrap().len(),
        "same salt length"
    );
    assert_eq!(dummy.hash.unwrap().len(), real.hash.unwrap().len());
    // And it is a hash argon2 can check, so checking it takes the full time.
    assert!(matches!(
        verify(&Argon2::default(), &Secret::new(PASSWORD), DUMMY_HASH),
        Verdict::Mismatch
    ));
}

// Tokens.

#[tokio::test]
async fn a_valid_token_logs_in_as_its_sub() {
    let (accounts, _store) = with_tokens();
    assert!(accounts.accepts_tokens());
    assert_eq!(
        authenticate(&accounts, login(None, None, Some(&valid_token("Zoe")))).await,
        Ok(Identity::Account(name("Zoe")))
    );
}

#[tokio::test]
async fn an_expired_token_fails_without_leeway() {
    let (accounts, _store) = with_tokens();
    let expired = token(
        SECRET,
        Algorithm::HS256,
        json!({"sub": "zoe", "exp": now() - 5}),
    );
    assert_eq!(
        authenticate(&accounts, login(None, None, Some(&expired))).await,
        Err(AuthError::Failed)
    );
}

#[tokio::test]
async fn a_token_without_exp_fails() {
    let (accounts, _store) = with_tokens();
    for claims in [
        json!({"sub": "zoe"}),
        json!({"sub": "zoe", "exp": null}),
        json!({"sub": "zoe", "exp": "tomorrow"}),
    ] {
        let no_exp = token(SECRET, Algorithm::HS256, claims.clone());
        assert_eq!(
            authenticate(&accounts, login(None, None, Some(&no_exp))).await,
            Err(AuthError::Failed),
            "{claims}"
        );
    }
}

#[tokio::test]
async fn a_token_signed_with_another_secret_fails() {
    let (accounts, _store) = with_tokens();
    let forged = token(
        b"some other secret",
        Algorithm::HS256,
        json!({"sub": "zoe", "exp": now() + 600}),
    );
    assert_eq!(
        authenticate(&accounts, login(None, None, Some(&forged))).await,
        Err(AuthError::Failed)
    );
}

#[tokio::test]
async fn a_token_of_another_algorithm_fails() {
    let (accounts, _store) = with_tokens();
    let claims = json!({"sub": "zoe", "exp": now() + 600});
    let hs384 = token(SECRET, Algorithm::HS384, claims.clone());
    let hs512 = token(SECRET, Algorithm::HS512, claims.clone());
    // `alg: none`, built by hand: no signature at all.
    let none = hand_made_token(json!({"alg": "none", "typ": "JWT"}), claims.clone(), "");
    // RS256 claimed, with a made-up signature (the key-confusion attack's header).
    let rs256 = hand_made_token(
        json!({"alg": "RS256", "typ": "JWT"}),
        claims.clone(),
        "c2ln",
    );
    for bad in [hs384, hs512, none, rs256] {
        assert_eq!(
            authenticate(&accounts, login(None, None, Some(&bad))).await,
            Err(AuthError::Failed),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_token_whose_sub_is_no_name_fails() {
    let (accounts, _store) = with_tokens();
    let exp = now() + 600;
    for claims in [
        json!({"sub": "no spaces allowed", "exp": exp}),
        json!({"sub": "", "exp": exp}),
        json!({"sub": "x".repeat(33), "exp": exp}),
        json!({"sub": 42, "exp": exp}),
        json!({"exp": exp}),
    ] {
        let bad = token(SECRET, Algorithm::HS256, claims.clone());
        assert_eq!(
            authenticate(&accounts, login(None, None, Some(&bad))).await,
            Err(AuthError::Failed),
            "{claims}"
        );
    }
}

#[tokio::test]
async fn a_token_not_valid_yet_or_for_an_audience_fails() {
    let (accounts, _store) = with_tokens();
    let exp = now() + 600;
    let early = token(
        SECRET,
        Algorithm::HS256,
        json!({"sub": "zoe", "exp": exp, "nbf": now() + 300}),
    );
    let audience = token(
        SECRET,
        Algorithm::HS256,
        json!({"sub": "zoe", "exp": exp, "aud": "some-other-app"}),
    );
    for bad in [early, audience] {
        assert_eq!(
            authenticate(&accounts, login(None, None, Some(&bad))).await,
            Err(AuthError::Failed)
        );
    }
    // A past `nbf` and any `iss` are fine.
    let fine = token(
        SECRET,
        Algorithm::HS256,
        json!({"sub": "zoe", "exp": exp, "nbf": now() - 10, "iss": "anyone"}),
    );
    assert_eq!(
        authenticate(&accounts, login(None, None, Some(&fine))).await,
        Ok(Identity::Account(name("zoe")))
    );
}

#[tokio::test]
async fn a_garbage_token_fails() {
    let (accounts, _store) = with_tokens();
    for garbage in ["garbage", "", "a.b.c", "..", "eyJhbGciOiJIUzI1NiJ9.e30."] {
        assert_eq!(
            authenticate(&accounts, login(None, None, Some(garbage))).await,
            Err(AuthError::Failed),
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn a_token_fails_without_a_configured_secret() {
    let accounts = Accounts::new(store());
    assert!(!accounts.accepts_tokens());
    assert_eq!(
        authenticate(&accounts, login(None, None, Some(&valid_token("zoe")))).await,
        Err(AuthError::Failed)
    );
    // An empty secret does not turn tokens on: anyone could sign with it.
    let empty = Accounts::new(store()).with_jwt_secret(Vec::new());
    assert!(!empty.accepts_tokens());
    let signed_with_nothing = token(
        b"",
        Algorithm::HS256,
        json!({"sub": "zoe", "exp": now() + 600}),
    );
    assert_eq!(
        authenticate(&empty, login(None, None, Some(&signed_with_nothing))).await,
        Err(AuthError::Failed)
    );
}

#[tokio::test]
async fn a_token_wins_over_the_name_and_password_beside_it() {
    let (accounts, store) = with_tokens();
    register(&accounts, &store, "Alice", PASSWORD).await;
    let attempt = login(
        Some("alice"),
        Some("a wrong password"),
        Some(&valid_token("zoe")),
    );
    assert_eq!(
        authenticate(&accounts, attempt).await,
        Ok(Identity::Account(name("zoe")))
    );
    // A bad token fails even with the right password beside it.
    let attempt = login(Some("alice"), Some(PASSWORD), Some("garbage"));
    assert_eq!(
        authenticate(&accounts, attempt).await,
        Err(AuthError::Failed)
    );
}

// Guests and failures.

#[tokio::test]
async fn a_login_without_credentials_is_a_guest() {
    let (accounts, _store) = with_tokens();
    assert_eq!(
        authenticate(&accounts, login(Some("Guesty"), None, None)).await,
        Ok(Identity::Guest(name("Guesty")))
    );
    // The core never sends these, but they fail rather than panic.
    assert_eq!(
        authenticate(&accounts, login(None, None, None)).await,
        Err(AuthError::Failed)
    );
    assert_eq!(
        authenticate(&accounts, login(None, Some(PASSWORD), None)).await,
        Err(AuthError::Failed)
    );
}

#[tokio::test]
async fn a_store_that_cannot_be_read_makes_password_logins_unavailable() {
    // A closed store fails every read, `account` included. (FailingStore fails only appends
    // and history pages.)
    let store = store();
    let accounts = Accounts::new(store.clone()).with_jwt_secret(SECRET.to_vec());
    store.close().await.unwrap();
    assert!(store.account(&name("alice").key()).await.is_err());
    assert_eq!(
        authenticate(&accounts, login(Some("alice"), Some(PASSWORD), None)).await,
        Err(AuthError::Unavailable)
    );
    // Tokens and guests do not read the store.
    assert_eq!(
        authenticate(&accounts, login(None, None, Some(&valid_token("zoe")))).await,
        Ok(Identity::Account(name("zoe")))
    );
    assert_eq!(
        authenticate(&accounts, login(Some("guest"), None, None)).await,
        Ok(Identity::Guest(name("guest")))
    );
}

#[tokio::test]
async fn no_secret_shows_in_debug_output() {
    let (accounts, _store) = with_tokens();
    let shown = format!("{accounts:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("accepts_tokens: true"), "{shown}");
}

// Bounded concurrency.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_logins_queues_and_every_login_completes() {
    let store = store();
    let accounts = Arc::new(Accounts::new(store.clone()));
    let max = accounts.max_concurrent_hashing();
    assert!(max >= 2);
    register(&accounts, &store, "Alice", PASSWORD).await;

    // More logins than permits, some of them abandoned while they wait or hash: every other
    // one completes, and every permit comes back.
    let n = 3 * max + 1;
    let mut logins = Vec::new();
    for i in 0..n {
        let accounts = Arc::clone(&accounts);
        logins.push(tokio::spawn(async move {
            let password = if i % 2 == 0 {
                PASSWORD
            } else {
                "wrong password"
            };
            let attempt = login(Some("alice"), Some(password), None);
            (i, authenticate(&accounts, attempt).await)
        }));
    }
    let abandoned: Vec<_> = (0..max)
        .map(|_| {
            let accounts = Arc::clone(&accounts);
            tokio::spawn(async move {
                authenticate(&accounts, login(Some("alice"), Some(PASSWORD), None)).await
            })
        })
        .collect();
    for login in &abandoned {
        login.abort();
    }
    let all = async {
        for login in logins {
            let (i, verdict) = login.await.unwrap();
            let expected = if i % 2 == 0 {
                Ok(Identity::Account(name("Alice")))
            } else {
                Err(AuthError::Failed)
            };
            assert_eq!(verdict, expected, "login {i}");
        }
        while accounts.hashing.available_permits() < max {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // A generous bound, only so that a deadlock fails instead of hanging.
    tokio::time::timeout(Duration::from_secs(300), all)
        .await
        .expect("every login completes and every permit comes back");
    assert_eq!(accounts.hashing.available_permits(), max);
}

/// Not a check: prints what one hash and one verification cost on this machine (run it with
/// `cargo test --release -p chat-auth -- --nocapture`).
#[tokio::test]
async fn prints_the_cost_of_one_hash_and_one_verification() {
    let store = store();
    let accounts = Accounts::new(store.clone());
    let started = Instant::now();
    let hash = accounts
        .hash_password(&name("alice"), &Secret::new(PASSWORD))
        .await
        .unwrap();
    let hashing = started.elapsed();
    put_account(&store, "alice", Some(hash)).await;
    let started = Instant::now();
    let verdict = authenticate(&accounts, login(Some("alice"), Some(PASSWORD), None)).await;
    let verifying = started.elapsed();
    assert!(verdict.is_ok());
    let started = Instant::now();
    let verdict = authenticate(&accounts, login(Some("nobody"), Some(PASSWORD), None)).await;
    let dummy = started.elapsed();
    assert!(verdict.is_err());
    println!(
        "argon2id: one hash {hashing:?}, one password login {verifying:?}, one login for a \
         name without an account {dummy:?}"
    );
}

#[test]
fn the_throttle_counts_a_token_against_the_name_it_claims() {
    let (accounts, _) = with_tokens();
    let forged = token(
        b"not the secret",
        Algorithm::HS256,
        serde_json::json!({"sub": "Alice", "exp": now() + 60}),
    );
    assert_eq!(
        accounts.claimed_name(&login(None, None, Some(&forged))),
        Some(name("Alice")),
        "read without checking: a forged token counts against its name too"
    );
    assert_eq!(
        accounts.claimed_name(&login(None, None, Some("garbage"))),
        None
    );
    assert_eq!(
        accounts.claimed_name(&login(Some("bob"), Some("pw"), None)),
        Some(name("bob"))
    );
}
