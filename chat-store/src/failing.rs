//! [`FailingStore`]: a [`Store`] that fails on demand, for testing what a runtime does when its
//! store fails.
//!
//! It wraps any store and passes every call through, except that a [`FailureSwitch`] (a cheap
//! handle a test keeps) can make `append` and the history reads (`history`, `dm_history`) fail,
//! each on its own. A failing call
//! returns [`StoreError::Io`] and does not reach the wrapped store, so it changes nothing: the
//! wrapped store holds exactly the records of the appends that returned `Ok`, as a real backend
//! does after its [`recover`](Store::recover). `recover` fails while appends are switched to
//! fail, like a store whose disk is still full, and is passed through otherwise.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chat_core::{
    Account, DirectMessage, MessageId, Record, RoomMessage, RoomName, Snapshot, UserKey,
};

use crate::store::{Store, StoreError};

/// A [`Store`] around another one whose `append` and history reads fail while a
/// [`FailureSwitch`] says so (see the module docs).
///
/// ```
/// use std::sync::Arc;
/// use chat_core::Record;
/// use chat_store::conformance::message;
/// use chat_store::{FailingStore, MemoryStore, Store, StoreError};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = FailingStore::new(Arc::new(MemoryStore::new()));
/// let switch = store.switch();
/// switch.fail_appends(true);
/// let refused = store.append(&[Record::Message(message("general", 1, "hi"))]).await;
/// assert!(matches!(refused, Err(StoreError::Io { .. })));
/// assert!(store.recover().await.is_err());
///
/// switch.fail_appends(false);
/// store.recover().await?;
/// store.append(&[Record::Message(message("general", 1, "hi"))]).await?;
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
pub struct FailingStore {
    inner: Arc<dyn Store>,
    switch: FailureSwitch,
}

impl std::fmt::Debug for FailingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailingStore")
            .field("switch", &self.switch)
            .finish_non_exhaustive()
    }
}

/// Turns the failures of a [`FailingStore`] on and off. Clones share one state, so a test can
/// keep one while the store is owned by the runtime. Both failures start off.
#[derive(Clone, Debug, Default)]
pub struct FailureSwitch {
    state: Arc<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    appends: AtomicBool,
    history: AtomicBool,
}

impl FailureSwitch {
    /// Makes `append` (and so `take_mailbox`'s delivery) and `recover` fail, or work again.
    pub fn fail_appends(&self, on: bool) {
        self.state.appends.store(on, Ordering::SeqCst);
    }

    /// Makes the history reads (`history` and `dm_history`) fail, or work again.
    pub fn fail_history(&self, on: bool) {
        self.state.history.store(on, Ordering::SeqCst);
    }

    /// Whether appends fail.
    pub fn appends_fail(&self) -> bool {
        self.state.appends.load(Ordering::SeqCst)
    }

    /// Whether history reads fail.
    pub fn history_fails(&self) -> bool {
        self.state.history.load(Ordering::SeqCst)
    }
}

impl FailingStore {
    /// Wraps `inner`; nothing fails until the [switch](FailingStore::switch) says so.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FailingStore {
            inner,
            switch: FailureSwitch::default(),
        }
    }

    /// A handle that turns the failures on and off.
    pub fn switch(&self) -> FailureSwitch {
        self.switch.clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }
}

/// The error of a call switched to fail.
fn switched_off(call: &str) -> StoreError {
    StoreError::Io {
        path: "FailingStore".into(),
        source: io::Error::other(format!(
            "{call} is switched to fail (a FailingStore in a test); nothing was changed"
        )),
    }
}

#[async_trait]
impl Store for FailingStore {
    async fn append(&self, records: &[Record]) -> Result<(), StoreError> {
        if self.switch.appends_fail() {
            return Err(switched_off("append"));
        }
        self.inner.append(records).await
    }

    async fn recover(&self) -> Result<(), StoreError> {
        if self.switch.appends_fail() {
            return Err(switched_off("recover"));
        }
        self.inner.recover().await
    }

    async fn load(&self, history: usize) -> Result<Snapshot, StoreError> {
        self.inner.load(history).await
    }

    async fn history(
        &self,
        room: &RoomName,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<RoomMessage>, StoreError> {
        if self.switch.history_fails() {
            return Err(switched_off("history"));
        }
        self.inner.history(room, before, limit).await
    }

    async fn dm_history(
        &self,
        a: &UserKey,
        b: &UserKey,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DirectMessage>, StoreError> {
        if self.switch.history_fails() {
            return Err(switched_off("dm_history"));
        }
        self.inner.dm_history(a, b, before, limit).await
    }

    async fn rooms(&self) -> Result<Vec<RoomName>, StoreError> {
        self.inner.rooms().await
    }

    async fn mailbox(&self, owner: &UserKey) -> Result<Vec<DirectMessage>, StoreError> {
        self.inner.mailbox(owner).await
    }

    async fn account(&self, name: &UserKey) -> Result<Option<Account>, StoreError> {
        self.inner.account(name).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use crate::conformance::{account, direct, direct_from, id_of, key, message};

    fn failing() -> (FailingStore, FailureSwitch) {
        let store = FailingStore::new(Arc::new(MemoryStore::new()));
        let switch = store.switch();
        (store, switch)
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[tokio::test]
    async fn passes_everything_through_while_nothing_fails() {
        let (store, switch) = failing();
        assert!(!switch.appends_fail() && !switch.history_fails());
        store
            .append(&[
                Record::Message(message("general", 1, "hi")),
                Record::Queued(direct(2, "bob", "psst")),
                Record::Dm(direct(2, "bob", "psst")),
                Record::Account(account("Bob", None)),
            ])
            .await
            .unwrap();
        store.recover().await.unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.rooms().await.unwrap(), vec![room("general")]);
        assert_eq!(
            store
                .history(&room("general"), None, 5)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(store.mailbox(&key("bob")).await.unwrap().len(), 1);
        assert_eq!(
            store
                .dm_history(&key("bob"), &key("alice"), None, 5)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store.account(&key("bob")).await.unwrap(),
            Some(account("Bob", None))
        );
        assert_eq!(
            store.load(5).await.unwrap(),
            store.inner().load(5).await.unwrap()
        );
        store.close().await.unwrap();
        assert!(matches!(store.rooms().await, Err(StoreError::Closed)));
    }

    #[tokio::test]
    async fn a_failing_append_changes_nothing_and_recover_fails_until_switched_back() {
        let (store, switch) = failing();
        store
            .append(&[
                Record::Message(message("general", 1, "kept")),
                Record::Queued(direct(2, "bob", "kept")),
            ])
            .await
            .unwrap();
        let before = store.load(10).await.unwrap();

        switch.fail_appends(true);
        let refused = store
            .append(&[
                Record::Message(message("general", 3, "lost")),
                Record::IdsReserved { until: id_of(100) },
            ])
            .await;
        match refused {
            Err(StoreError::Io { source, .. }) => {
                assert!(source.to_string().contains("switched to fail"), "{source}")
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        // Taking a mailbox stores a delivery, so it fails too, and hands out nothing.
        assert!(matches!(
            store.take_mailbox(&key("bob")).await,
            Err(StoreError::Io { .. })
        ));
        assert!(matches!(store.recover().await, Err(StoreError::Io { .. })));
        assert_eq!(store.load(10).await.unwrap(), before, "nothing changed");
        // Reads still work, history included.
        assert_eq!(
            store
                .history(&room("general"), None, 5)
                .await
                .unwrap()
                .len(),
            1
        );

        switch.fail_appends(false);
        store.recover().await.unwrap();
        store
            .append(&[Record::Message(message("general", 2, "stored"))])
            .await
            .unwrap();
        let ids: Vec<u64> = store
            .history(&room("general"), None, 5)
            .await
            .unwrap()
            .iter()
            .map(|m| m.id.get())
            .collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(store.load(1).await.unwrap().next_id, Some(id_of(3)));
        assert_eq!(store.take_mailbox(&key("bob")).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn history_reads_fail_on_their_own_switch() {
        let (store, switch) = failing();
        let (alice, bob) = (key("alice"), key("bob"));
        store
            .append(&[
                Record::Message(message("general", 1, "hi")),
                Record::Dm(direct(2, "bob", "psst")),
            ])
            .await
            .unwrap();
        switch.fail_history(true);
        assert!(matches!(
            store.history(&room("general"), None, 5).await,
            Err(StoreError::Io { .. })
        ));
        assert!(matches!(
            store.dm_history(&alice, &bob, None, 5).await,
            Err(StoreError::Io { .. })
        ));
        // Appends, loads and recovery are unaffected.
        store
            .append(&[
                Record::Message(message("general", 3, "hi")),
                Record::Dm(direct_from(4, "bob", "alice", "hi")),
            ])
            .await
            .unwrap();
        store.recover().await.unwrap();
        let snapshot = store.load(5).await.unwrap();
        assert_eq!(snapshot.rooms[&room("general")].messages.len(), 2);
        assert_eq!(snapshot.dms[&bob].messages.len(), 2);

        switch.fail_history(false);
        assert_eq!(
            store
                .history(&room("general"), None, 5)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store.dm_history(&bob, &alice, None, 5).await.unwrap().len(),
            2
        );
    }

    #[tokio::test]
    async fn clones_of_the_switch_share_one_state() {
        let (store, switch) = failing();
        let other = switch.clone();
        other.fail_appends(true);
        assert!(switch.appends_fail() && store.switch().appends_fail());
        assert!(
            store
                .append(&[Record::Message(message("general", 1, "x"))])
                .await
                .is_err()
        );
        other.fail_appends(false);
        assert!(!switch.appends_fail());
    }
}
