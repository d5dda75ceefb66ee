//! Appended messages per second for `JsonFileStore` with group commit, at 1, 16 and 256
//! concurrent writers. Each writer appends one `Record::Message` per call to its own room (so its
//! ids increase within the room) and waits for it to be durable before the next; the writer
//! thread commits whatever is queued together, one fsync per touched file.
//!
//! Run with `cargo bench --bench store`. The figures depend on the disk's fsync latency far more
//! than on the CPU.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_core::{MessageId, Record, RoomMessage, Text, Timestamp};
use chat_store::{JsonFileStore, Store};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn message(room: &str, id: u64) -> Record {
    Record::Message(Arc::new(RoomMessage {
        room: room.parse().expect("a valid room name"),
        id: MessageId::new(id).expect("ids start at 1"),
        from: "bench".parse().expect("a valid user name"),
        text: Text::parse("the quick brown fox jumps over the lazy dog", 4096)
            .expect("a valid text"),
        ts: Timestamp::from_unix_millis(1_764_000_000_000 + id),
    }))
}

fn appends(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut group = c.benchmark_group("json_file_store_append");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for writers in [1u64, 16, 256] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(
            runtime
                .block_on(JsonFileStore::open(dir.path()))
                .expect("the store opens"),
        );
        let rooms: Arc<Vec<String>> = Arc::new((0..writers).map(|w| format!("room{w}")).collect());
        let next_id = Arc::new(AtomicU64::new(1));
        group.bench_with_input(
            BenchmarkId::new("writers", writers),
            &writers,
            |b, &writers| {
                b.to_async(&runtime).iter_custom(|iters| {
                    let (store, rooms, next_id) = (store.clone(), rooms.clone(), next_id.clone());
                    async move {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..writers)
                            .map(|w| {
                                // `iters` messages in all, spread over the writers.
                                let share = iters / writers + u64::from(w < iters % writers);
                                let (store, rooms, next_id) =
                                    (store.clone(), rooms.clone(), next_id.clone());
                                tokio::spawn(async move {
                                    let room = &rooms[w as usize];
                                    for _ in 0..share {
                                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                                        store
                                            .append(&[message(room, id)])
                                            .await
                                            .expect("the append is durable");
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.expect("a writer panicked");
                        }
                        start.elapsed()
                    }
                });
            },
        );
        runtime.block_on(store.close()).expect("the store closes");
    }
    group.finish();
}

criterion_group!(benches, appends);
criterion_main!(benches);
