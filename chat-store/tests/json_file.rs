//! The conformance suite and the restart checks against [`JsonFileStore`].

use chat_store::{JsonFileStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_file_store_conforms() {
    let parent = tempfile::tempdir().unwrap();
    let mut n = 0;
    conformance::check_store(|| {
        n += 1;
        let dir = parent.path().join(format!("store{n}"));
        async move { JsonFileStore::open(dir).await.unwrap() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_file_store_keeps_everything_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    conformance::check_restart(|| {
        let path = path.clone();
        async move { JsonFileStore::open(path).await.unwrap() }
    })
    .await;
}
