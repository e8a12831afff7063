//! Checkpoint cost: the 10,000-iteration For loop with a durable checkpoint after every
//! node (30,003 saves), and a loop over a 10,000-element list with and without checkpoints.
//!
//! `make bench` (or `cargo bench --bench checkpoint`). Targets: the checkpointed 10k loop
//! <= 600 ms (>= 50,000 node executions per second with checkpoints on); the list loop with
//! checkpoints at most 2x the plain list loop. Bytes per checkpoint are printed once.

use casare_robot::engine::runner::{self, NoObserver, RunOptions};
use casare_robot::engine::{load_str, CancelToken, Dict, Workflow};
use casare_robot::store::checkpoint::{CheckpointMeta, Checkpointer};
use casare_robot::store::Store;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use std::time::Duration;

fn load(name: &str) -> Workflow {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/workflows")
        .join(name);
    load_str(&std::fs::read_to_string(&path).expect("bench workflow"))
        .expect("bench workflow loads")
}

fn checkpointed(wf: &Workflow, store: &mut Store, job: &str) -> (runner::RunOutcome, u64, u64) {
    let meta = CheckpointMeta::new(wf, &Dict::new());
    let mut writer = Checkpointer::new(store, job, meta, Duration::ZERO).for_workflow(wf, 0);
    let out = runner::run(
        wf,
        Dict::new(),
        &RunOptions::default(),
        &CancelToken::new(),
        &mut writer,
    );
    assert!(out.success(), "{:?}", out.error);
    (out, writer.stats.saves, writer.stats.bytes)
}

fn bench_checkpoints(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(dir.path()).expect("store");
    let mut group = c.benchmark_group("checkpoint");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));

    let for_loop = load("for_loop_10k.json");
    let (out, saves, bytes) = checkpointed(&for_loop, &mut store, "probe");
    eprintln!(
        "for_loop_10k: {} node executions, {saves} checkpoints, {bytes} bytes, {} bytes per checkpoint",
        out.node_executions,
        bytes / saves.max(1)
    );
    group.throughput(Throughput::Elements(out.node_executions));
    group.bench_function("for_loop_10k_checkpointed", |b| {
        b.iter(|| black_box(checkpointed(&for_loop, &mut store, "for-loop")))
    });

    let list_loop = load("list_loop_10k.json");
    let (out, saves, bytes) = checkpointed(&list_loop, &mut store, "probe-list");
    eprintln!(
        "list_loop_10k: {} node executions, {saves} checkpoints, {bytes} bytes, {} bytes per checkpoint",
        out.node_executions,
        bytes / saves.max(1)
    );
    group.throughput(Throughput::Elements(out.node_executions));
    group.bench_function("list_loop_10k_plain", |b| {
        b.iter(|| {
            black_box(runner::run(
                &list_loop,
                Dict::new(),
                &RunOptions::default(),
                &CancelToken::new(),
                &mut NoObserver,
            ))
        })
    });
    group.bench_function("list_loop_10k_checkpointed", |b| {
        b.iter(|| black_box(checkpointed(&list_loop, &mut store, "list-loop")))
    });
    group.finish();
}

criterion_group!(benches, bench_checkpoints);
criterion_main!(benches);
