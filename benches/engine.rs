//! Engine throughput: the 10,000-iteration For loop (30,000 node executions) and a
//! template-heavy loop, run in-process without checkpoints; and ParallelForEach over 1,000
//! items, 4 at a time, of a 5 ms WaitNode.
//!
//! `make bench` (or `cargo bench --bench engine`). Targets: >= 1,000,000 node executions
//! per second on the loop; the upstream Python engine does about 6,000 per second.
//!
//! `subflow_inline` / `subflow_call`: the same five nodes run inline, and inside a
//! sub-workflow called by one SubflowNode (an input in, an output back). Target: the call costs
//! at most 50 µs over the nodes it runs (the difference of the two). The
//! ParallelForEach run takes <= 1.4 s (the waits alone take 1.25 s when 4 always overlap).

use casare_robot::engine::runner::{self, NoObserver, RunOptions};
use casare_robot::engine::{load_str, CancelToken, Dict, Workflow};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use std::path::Path;

fn load(name: &str) -> Workflow {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/workflows")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("bench workflow");
    load_str(&text).expect("bench workflow loads")
}

fn bench_engine(c: &mut Criterion) {
    let opts = RunOptions::default();
    let cancel = CancelToken::new();
    let mut group = c.benchmark_group("engine");

    let for_loop = load("for_loop_10k.json");
    let probe = runner::run(&for_loop, Dict::new(), &opts, &cancel, &mut NoObserver);
    assert!(probe.success());
    group.throughput(Throughput::Elements(probe.node_executions));
    group.bench_function("for_loop_10k", |b| {
        b.iter(|| {
            black_box(runner::run(
                &for_loop,
                Dict::new(),
                &opts,
                &cancel,
                &mut NoObserver,
            ))
        })
    });

    let templates = load("templates_1k.json");
    let probe = runner::run(&templates, Dict::new(), &opts, &cancel, &mut NoObserver);
    assert!(probe.success());
    group.throughput(Throughput::Elements(probe.node_executions));
    group.bench_function("templates_1k", |b| {
        b.iter(|| {
            black_box(runner::run(
                &templates,
                Dict::new(),
                &opts,
                &cancel,
                &mut NoObserver,
            ))
        })
    });

    let hello_text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello.json"))
            .unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("load_and_run_hello", |b| {
        b.iter(|| {
            let wf = load_str(black_box(&hello_text)).unwrap();
            black_box(runner::run(
                &wf,
                Dict::new(),
                &opts,
                &cancel,
                &mut NoObserver,
            ))
        })
    });
    bench_subflow(&mut group, &opts, &cancel);
    group.finish();
}

/// Five SetVariable nodes, each appending to `text`.
fn five_nodes() -> serde_json::Value {
    let mut nodes = serde_json::Map::new();
    let mut conns = Vec::new();
    for i in 0..5 {
        let id = format!("n{i}");
        nodes.insert(
            id.clone(),
            json!({"node_id": id, "node_type": "SetVariableNode",
                   "config": {"variable_name": "text", "value": format!("{{{{text}}}}{i}")}}),
        );
        if i > 0 {
            conns.push(
                json!({"source_node": format!("n{}", i - 1), "source_port": "exec_out",
                              "target_node": id, "target_port": "exec_in"}),
            );
        }
    }
    json!({"metadata": {"name": "five"}, "nodes": nodes, "connections": conns,
           "variables": {"text": ""}})
}

fn bench_subflow(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    opts: &RunOptions,
    cancel: &CancelToken,
) {
    let inline = casare_robot::engine::model::load_json(&five_nodes()).unwrap();
    let mut child = five_nodes();
    child["inputs"] = json!([{"name": "text", "type": "STRING"}]);
    child["outputs"] = json!([{"name": "text", "type": "STRING"}]);
    let parent = json!({
        "metadata": {"name": "caller"},
        "nodes": {"call": {"node_id": "call", "node_type": "SubflowNode",
                           "config": {"subflow_path": "five.json", "text": "x"}}},
        "connections": [],
        "subflows": {"five.json": child},
    });
    let called = casare_robot::engine::model::load_json(&parent).unwrap();
    let probe = runner::run(&called, Dict::new(), opts, cancel, &mut NoObserver);
    assert!(probe.success(), "{:?}", probe.error);
    group.throughput(Throughput::Elements(1));
    for (name, wf) in [("subflow_inline", &inline), ("subflow_call", &called)] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(runner::run(wf, Dict::new(), opts, cancel, &mut NoObserver)))
        });
    }
}

/// ParallelForEach over 1,000 items, `batch_size` 4, each item a 5 ms WaitNode.
fn parallel_for_each_1k() -> Workflow {
    let items: Vec<u32> = (0..1000).collect();
    let doc = serde_json::json!({
        "metadata": {"name": "parallel for each 1k"},
        "nodes": {
            "pfe": {"node_id": "pfe", "node_type": "ParallelForEachNode",
                    "config": {"items": items, "batch_size": 4}},
            "wait": {"node_id": "wait", "node_type": "WaitNode", "config": {"duration": 0.005}},
            "done": {"node_id": "done", "node_type": "SetVariableNode",
                     "config": {"variable_name": "n", "value": "{{pfe.results}}"}}
        },
        "connections": [
            {"source_node": "pfe", "source_port": "body", "target_node": "wait", "target_port": "exec_in"},
            {"source_node": "pfe", "source_port": "completed", "target_node": "done", "target_port": "exec_in"}
        ]
    });
    load_str(&doc.to_string()).expect("parallel bench workflow loads")
}

fn probe_run(wf: &Workflow, opts: &RunOptions, cancel: &CancelToken) -> runner::RunOutcome {
    runner::run(wf, Dict::new(), opts, cancel, &mut NoObserver)
}

fn bench_parallel(c: &mut Criterion) {
    let opts = RunOptions::default();
    let cancel = CancelToken::new();
    let wf = parallel_for_each_1k();
    let started = std::time::Instant::now();
    let probe = probe_run(&wf, &opts, &cancel);
    assert!(probe.success(), "{:?}", probe.error);
    // The implicit start, the ParallelForEach, 1,000 waits, the SetVariable.
    assert_eq!(probe.node_executions, 1003);
    println!(
        "parallel_for_each_1k_batch4_wait5ms: one run took {:.3} s (target <= 1.4 s)",
        started.elapsed().as_secs_f64()
    );
    let mut group = c.benchmark_group("parallel");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("parallel_for_each_1k_batch4_wait5ms", |b| {
        b.iter(|| black_box(probe_run(&wf, &opts, &cancel)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = bench_engine
}

criterion_group! {
    name = parallel;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(14));
    targets = bench_parallel
}
criterion_main!(benches, parallel);
