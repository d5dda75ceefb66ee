//! The conformance suite against [`MemoryStore`], the reference behaviour, and the trait used
//! as an object.

use chat_store::{MemoryStore, conformance};

#[tokio::test]
async fn memory_store_conforms() {
    conformance::check_store(|| async { MemoryStore::new() }).await;
}

#[tokio::test]
async fn stores_work_as_trait_objects() {
    use std::sync::Arc;

    use chat_store::{JsonFileStore, Store};
    let tmp = tempfile::tempdir().unwrap();
    let stores: Vec<Arc<dyn Store>> = vec![
        Arc::new(MemoryStore::new()),
        Arc::new(JsonFileStore::open(tmp.path()).await.unwrap()),
    ];
    for store in stores {
        conformance::load_returns_bounded_tails(&*store).await;
    }
}
