//! The Supabase progress reporter against a recording HTTP server on 127.0.0.1: headers, body
//! shape and topic, batching and order, drop-oldest under backlog, failures that do not stop
//! later batches, `stop` flushing within its deadline, credential checks, and the API key never
//! reaching logs or `Debug` output.

use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use casare_robot::observe::supabase::{
    validate_credentials, ProgressReporter, ReporterOptions, ReporterStats, BROADCAST_PATH,
};
use serde_json::json;
use support::recorder::{Recorded, Server};

mod support;

const KEY: &str = "test-key-0123456789-abcdefghij-SECRET";
const WAIT: Duration = Duration::from_secs(10);

// ---- log capture: every line this crate logs, to check that the key never appears ----

struct Capture;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // As in production (`logging.rs`): ureq's own trace output is silenced.
        metadata.target().starts_with("casare_robot")
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        log::set_boxed_logger(Box::new(Capture)).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Captured lines containing `marker` (each test's server port makes its lines unique).
fn lines_with(marker: &str) -> Vec<String> {
    LINES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| l.contains(marker))
        .cloned()
        .collect()
}

fn assert_key_never_logged() {
    let lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
    assert!(!lines.is_empty(), "nothing was logged at all");
    for line in lines.iter() {
        assert!(!line.contains(KEY), "the key was logged: {line}");
    }
}

/// The `payload.i` of each message of a request.
fn indices(r: &Recorded) -> Vec<u64> {
    r.messages()
        .iter()
        .map(|m| m["payload"]["i"].as_u64().expect("payload.i"))
        .collect()
}

fn fast() -> ReporterOptions {
    ReporterOptions {
        batch_window: Duration::from_millis(50),
        ..ReporterOptions::default()
    }
}

fn deadline() -> Instant {
    Instant::now() + WAIT
}

// ---- tests ----

#[test]
fn a_batch_carries_the_headers_topic_and_events_in_order() {
    capture_logs();
    let server = Server::ok();
    // Default options: the three reports fall in one 1 s batch.
    let reporter = ProgressReporter::start(&server.url, KEY, "robot-7").unwrap();
    reporter.report("node_started", json!({"job_id": "j1", "node_id": "n1"}));
    reporter.report("node_completed", json!({"job_id": "j1", "node_id": "n1"}));
    reporter.report(
        "node_error",
        json!({"job_id": "j1", "node_id": "n2", "error": "x"}),
    );
    reporter.report("job_completed", json!({"job_id": "j1", "success": false}));

    let r = server.next();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, BROADCAST_PATH);
    assert_eq!(r.header("apikey"), Some(KEY));
    assert_eq!(
        r.header("Authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.body,
        json!({"messages": [
            {"topic": "robot:robot-7", "event": "node_started",
             "payload": {"job_id": "j1", "node_id": "n1"}},
            {"topic": "robot:robot-7", "event": "node_completed",
             "payload": {"job_id": "j1", "node_id": "n1"}},
            {"topic": "robot:robot-7", "event": "node_error",
             "payload": {"job_id": "j1", "node_id": "n2", "error": "x"}},
            {"topic": "robot:robot-7", "event": "job_completed",
             "payload": {"job_id": "j1", "success": false}},
        ]})
    );
    let stats = reporter.stop(deadline());
    assert_eq!(
        stats,
        ReporterStats {
            sent: 4,
            sent_batches: 1,
            ..ReporterStats::default()
        }
    );
    assert!(server.requests.try_recv().is_err(), "one request only");
    assert_key_never_logged();
}

#[test]
fn a_large_backlog_goes_in_batches_of_100_in_order_from_several_sinks() {
    capture_logs();
    let server = Server::ok();
    let reporter = ProgressReporter::start_with(&server.url, KEY, "r", fast()).unwrap();
    let sink = reporter.sink();
    for i in 0..250 {
        // Alternate between the reporter and a cloned sink: one queue, one order.
        if i % 2 == 0 {
            reporter.report("node_completed", json!({ "i": i }));
        } else {
            sink.report("node_completed", json!({ "i": i }));
        }
    }
    let got = server.collect(250);
    let sizes: Vec<usize> = got.iter().map(|r| r.messages().len()).collect();
    assert!(sizes.iter().all(|n| *n <= 100), "{sizes:?}");
    assert_eq!(sizes[0], 100, "a full batch leaves at once: {sizes:?}");
    let order: Vec<u64> = got.iter().flat_map(indices).collect();
    assert_eq!(order, (0..250).collect::<Vec<u64>>());
    let stats = reporter.stop(deadline());
    assert_eq!((stats.sent, stats.dropped, stats.failed), (250, 0, 0));
    assert_eq!(sink.stats(), stats, "the sink sees the same counters");
}

#[test]
fn under_backlog_the_oldest_events_are_dropped_and_reporting_never_blocks() {
    capture_logs();
    // The first request is held until the test releases it.
    let server = Server::start(Box::new(|n| (202, n == 0)));
    let options = ReporterOptions {
        queue_capacity: 10,
        ..fast()
    };
    let reporter = ProgressReporter::start_with(&server.url, KEY, "r", options).unwrap();
    reporter.report("node_started", json!({"i": 0}));
    let first = server.next();
    assert_eq!(indices(&first), [0]);

    // The thread is stuck in that request: 30 more events meet a queue of 10.
    let started = Instant::now();
    for i in 1..=30 {
        reporter.report("node_completed", json!({ "i": i }));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "reporting blocked for {:?}",
        started.elapsed()
    );
    assert_eq!(reporter.stats().dropped, 20);

    server.release.send(()).unwrap();
    let rest = server.collect(10);
    let order: Vec<u64> = rest.iter().flat_map(indices).collect();
    assert_eq!(
        order,
        (21..=30).collect::<Vec<u64>>(),
        "the newest ten survive"
    );
    let stats = reporter.stop(deadline());
    assert_eq!((stats.sent, stats.dropped), (11, 20));
    let warned = LINES
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("WARN") && l.contains("the oldest are dropped"));
    assert!(warned, "the backlog is reported");
}

#[test]
fn an_unreachable_server_fails_batches_without_blocking_or_leaking_the_key() {
    capture_logs();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let reporter = ProgressReporter::start_with(&url, KEY, "r", fast()).unwrap();
    let started = Instant::now();
    for i in 0..5 {
        reporter.report("node_started", json!({ "i": i }));
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    let stop_by = Instant::now() + Duration::from_secs(5);
    let stats = reporter.stop(stop_by);
    assert!(Instant::now() < stop_by + Duration::from_secs(1));
    assert_eq!(stats.sent, 0);
    assert_eq!(stats.failed_batches, 1, "{stats:?}");
    assert_eq!(stats.failed + stats.dropped, 5, "{stats:?}");
    let warnings: Vec<String> = lines_with(&format!("127.0.0.1:{port}"))
        .into_iter()
        .filter(|l| l.starts_with("WARN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("cannot broadcast progress"),
        "{warnings:?}"
    );
    assert_key_never_logged();
}

#[test]
fn stop_sends_what_is_queued_without_waiting_for_the_batch_window() {
    capture_logs();
    let server = Server::ok();
    let options = ReporterOptions {
        batch_window: Duration::from_secs(30),
        ..ReporterOptions::default()
    };
    let reporter = ProgressReporter::start_with(&server.url, KEY, "r", options).unwrap();
    let sink = reporter.sink();
    for i in 0..3 {
        sink.report("node_completed", json!({ "i": i }));
    }
    let started = Instant::now();
    let stats = reporter.stop(deadline());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((stats.sent, stats.sent_batches), (3, 1));
    assert_eq!(indices(&server.next()), [0, 1, 2]);

    // The sink outlives the reporter: later events are dropped and counted.
    sink.report("node_completed", json!({"i": 3}));
    assert_eq!(sink.stats().dropped, 1);
    assert!(server
        .requests
        .recv_timeout(Duration::from_millis(200))
        .is_err());
}

#[test]
fn stop_returns_by_its_deadline_when_the_server_hangs() {
    capture_logs();
    let server = Server::start(Box::new(|_| (202, true)));
    let reporter = ProgressReporter::start_with(&server.url, KEY, "r", fast()).unwrap();
    reporter.report("node_started", json!({"i": 0}));
    server.next();
    reporter.report("node_started", json!({"i": 1}));
    let stop_by = Instant::now() + Duration::from_millis(500);
    let stats = reporter.stop(stop_by);
    assert!(
        Instant::now() < stop_by + Duration::from_secs(1),
        "stop overran its deadline"
    );
    assert_eq!(stats.sent, 0);
}

#[test]
fn a_server_error_does_not_stop_later_batches() {
    capture_logs();
    let server = Server::start(Box::new(|n| (if n == 0 { 500 } else { 202 }, false)));
    let reporter = ProgressReporter::start_with(&server.url, KEY, "r", fast()).unwrap();
    reporter.report("node_error", json!({"i": 0}));
    assert_eq!(indices(&server.next()), [0]);
    reporter.report("node_started", json!({"i": 1}));
    reporter.report("node_completed", json!({"i": 2}));
    assert_eq!(indices(&server.next()), [1, 2]);
    let stats = reporter.stop(deadline());
    assert_eq!(
        stats,
        ReporterStats {
            sent: 2,
            sent_batches: 1,
            failed: 1,
            failed_batches: 1,
            ..ReporterStats::default()
        }
    );
    let lines = lines_with(&server.port_marker());
    let warn: Vec<&String> = lines.iter().filter(|l| l.starts_with("WARN")).collect();
    assert_eq!(warn.len(), 1, "{lines:?}");
    assert!(warn[0].contains("http 500"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("INFO") && l.contains("work again")),
        "{lines:?}"
    );
    assert_key_never_logged();
}

#[test]
fn unknown_events_are_rejected_and_nothing_is_sent() {
    capture_logs();
    let server = Server::ok();
    let reporter = ProgressReporter::start_with(&server.url, KEY, "r", fast()).unwrap();
    reporter.report("job_started", json!({}));
    reporter.report("status_update", json!({}));
    let stats = reporter.stop(deadline());
    assert_eq!(
        stats,
        ReporterStats {
            rejected: 2,
            ..ReporterStats::default()
        }
    );
    assert!(server
        .requests
        .recv_timeout(Duration::from_millis(200))
        .is_err());
}

#[test]
fn the_key_is_not_in_debug_output() {
    capture_logs();
    let server = Server::ok();
    let reporter = ProgressReporter::start(&server.url, KEY, "robot-7").unwrap();
    let text = format!("{reporter:?} {:?}", reporter.sink());
    assert!(!text.contains(KEY), "{text}");
    assert!(text.contains("robot-7"), "{text}");
    assert!(text.contains(BROADCAST_PATH), "{text}");
    reporter.stop(deadline());
}

#[test]
fn credentials_are_checked_with_the_upstream_messages() {
    let key = "k".repeat(20);
    let short = "k".repeat(19);
    /// URL, key, and the expected answer.
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Result<(), &'a str>);
    let cases: &[Case] = &[
        (None, Some(&key), Err("Supabase URL is required")),
        (Some(""), Some(&key), Err("Supabase URL is required")),
        (Some("   "), Some(&key), Err("Supabase URL is required")),
        (
            Some("https://x.supabase.co"),
            None,
            Err("Supabase API key is required"),
        ),
        (
            Some("https://x.supabase.co"),
            Some(""),
            Err("Supabase API key is required"),
        ),
        (None, None, Err("Supabase URL is required")),
        (
            Some("http://x.supabase.co"),
            Some(&key),
            Err("Supabase URL must use HTTPS"),
        ),
        (
            Some("ftp://x.supabase.co"),
            Some(&key),
            Err("Supabase URL must use HTTPS"),
        ),
        (
            Some("x.supabase.co"),
            Some(&key),
            Err("Supabase URL must use HTTPS"),
        ),
        (
            Some("https://x.supabase.co"),
            Some(&short),
            Err("API key appears to be invalid (too short)"),
        ),
        (Some("https://x.supabase.co"), Some(&key), Ok(())),
        (Some("HTTPS://x.supabase.co/"), Some(&key), Ok(())),
        // Loopback http is accepted for local testing; nothing else over http.
        (Some("http://127.0.0.1:54321"), Some(&key), Ok(())),
        (Some("http://localhost:54321/"), Some(&key), Ok(())),
        (Some("http://LOCALHOST"), Some(&key), Ok(())),
        (Some("http://[::1]:8000"), Some(&key), Ok(())),
        (
            Some("http://127.0.0.1:54321"),
            Some(&short),
            Err("API key appears to be invalid (too short)"),
        ),
        (
            Some("http://127.0.0.2"),
            Some(&key),
            Err("Supabase URL must use HTTPS"),
        ),
        (
            Some("http://localhost.evil.com"),
            Some(&key),
            Err("Supabase URL must use HTTPS"),
        ),
        (
            Some("http://127.0.0.1.nip.io"),
            Some(&key),
            Err("Supabase URL must use HTTPS"),
        ),
        (
            Some("http://127.0.0.1@evil.com"),
            Some(&key),
            Err("Supabase URL must use HTTPS"),
        ),
        (
            Some("http://user@127.0.0.1"),
            Some(&key),
            Err("Supabase URL must use HTTPS"),
        ),
        (
            Some("http://127.0.0.1:80x"),
            Some(&key),
            Err("Supabase URL must use HTTPS"),
        ),
        (
            Some("http://[::1]x"),
            Some(&key),
            Err("Supabase URL must use HTTPS"),
        ),
        (
            Some("http://[::2]:80"),
            Some(&key),
            Err("Supabase URL must use HTTPS"),
        ),
    ];
    for (url, key, expected) in cases {
        let got = validate_credentials(*url, *key);
        assert_eq!(
            got.as_ref().map_err(String::as_str),
            expected.as_ref().map_err(|e| *e),
            "{url:?}"
        );
    }
}

#[test]
fn start_refuses_bad_settings_with_their_message() {
    let key = "k".repeat(20);
    let err = ProgressReporter::start("http://example.com", &key, "r").unwrap_err();
    assert_eq!(err, "Supabase URL must use HTTPS");
    let err = ProgressReporter::start("https://x.supabase.co", "short", "r").unwrap_err();
    assert_eq!(err, "API key appears to be invalid (too short)");
    let err = ProgressReporter::start("https://x.supabase.co", &key, " ").unwrap_err();
    assert!(err.contains("robot id"), "{err}");
    let zero = ReporterOptions {
        max_batch: 0,
        ..ReporterOptions::default()
    };
    let err = ProgressReporter::start_with("https://x.supabase.co", &key, "r", zero).unwrap_err();
    assert!(err.contains("max_batch"), "{err}");
}
