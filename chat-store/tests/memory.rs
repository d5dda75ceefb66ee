//! The conformance suite against [`MemoryStore`], the reference behaviour.

use chat_store::{MemoryStore, conformance};

#[tokio::test]
async fn memory_store_conforms() {
    conformance::check_store(|| async { MemoryStore::new() }).await;
}
