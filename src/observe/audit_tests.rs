//! Tests of the audit trail: line format, event names, severity order, queries, the ring,
//! rotation and pruning, size seeding, secret scrubbing, reading a directory back, and what
//! happens when the directory is unusable or disappears.

use super::*;
use chrono::TimeZone;

fn config(dir: &Path, max_file_bytes: u64, backup_count: u32) -> AuditConfig {
    AuditConfig {
        dir: dir.to_path_buf(),
        max_file_bytes,
        backup_count,
        robot_id: "robot-1".to_string(),
        secrets: Vec::new(),
    }
}

fn entries_in(path: &Path) -> Vec<AuditEntry> {
    let text = fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn messages(entries: &[AuditEntry]) -> Vec<String> {
    entries.iter().map(|e| e.message.clone()).collect()
}

/// Logs `count` entries whose lines all have the same length: "entry NN", job "job-1".
fn log_fixed_width(logger: &mut AuditLogger, range: std::ops::Range<usize>) {
    for n in range {
        logger.log(
            AuditEvent::JobStarted,
            Severity::Info,
            &format!("entry {n:02}"),
            Some("job-1"),
            None,
            json!({ "n": format!("{n:02}") }),
        );
    }
}

fn audit_file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn entry_at(
    ts: DateTime<Utc>,
    event: AuditEvent,
    severity: Severity,
    job: Option<&str>,
) -> AuditEntry {
    AuditEntry {
        timestamp: ts,
        event_type: event,
        severity,
        message: format!("{} at {}", event.as_str(), ts.timestamp()),
        robot_id: "robot-1".to_string(),
        job_id: job.map(str::to_string),
        node_id: None,
        details: json!({}),
    }
}

#[test]
fn an_entry_is_serialised_exactly_like_the_reference_line() {
    let ts = Utc
        .with_ymd_and_hms(2025, 11, 29, 10, 31, 2)
        .unwrap()
        .checked_add_signed(chrono::Duration::microseconds(123_456))
        .unwrap();
    let entry = AuditEntry {
        timestamp: ts,
        event_type: AuditEvent::JobFailed,
        severity: Severity::Error,
        message: "Job failed: Element not found".to_string(),
        robot_id: "3f9e".to_string(),
        job_id: Some("b1c2".to_string()),
        node_id: None,
        details: json!({ "error": "Element not found", "duration_ms": 5321.7 }),
    };
    let expected = r#"{"timestamp":"2025-11-29T10:31:02.123456+00:00","event_type":"job.failed","severity":"error","message":"Job failed: Element not found","robot_id":"3f9e","job_id":"b1c2","node_id":null,"details":{"error":"Element not found","duration_ms":5321.7}}"#;
    assert_eq!(entry.to_json_line(), expected);
    let back: AuditEntry = serde_json::from_str(expected).unwrap();
    assert_eq!(back, entry);

    // Whole seconds still carry six digits (Python drops them; we always write them), and a
    // Python line without fractional digits reads back.
    let whole = AuditEntry {
        timestamp: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap(),
        ..entry.clone()
    };
    assert!(whole
        .to_json_line()
        .starts_with(r#"{"timestamp":"2025-01-02T03:04:05.000000+00:00","#));
    let python = r#"{"timestamp":"2025-01-02T03:04:05+00:00","event_type":"robot.started","severity":"info","message":"Robot agent started","robot_id":"r","job_id":null,"node_id":null,"details":{}}"#;
    let parsed: AuditEntry = serde_json::from_str(python).unwrap();
    assert_eq!(parsed.timestamp, whole.timestamp);
    assert_eq!(parsed.event_type, AuditEvent::RobotStarted);
}

#[test]
fn logged_entries_have_micro_timestamps_the_robot_id_and_empty_details() {
    let mut logger = AuditLogger::in_memory("robot-9", &[]);
    logger.log(
        AuditEvent::JobClaimed,
        Severity::Info,
        "m",
        Some("j"),
        Some("n"),
        Value::Null,
    );
    let e = &logger.get_recent(1)[0];
    assert_eq!(e.timestamp.timestamp_subsec_nanos() % 1000, 0);
    assert_eq!(e.robot_id, "robot-9");
    assert_eq!(e.job_id.as_deref(), Some("j"));
    assert_eq!(e.node_id.as_deref(), Some("n"));
    assert_eq!(e.details, json!({}));
    let line: Value = serde_json::from_str(&e.to_json_line()).unwrap();
    let keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "timestamp",
            "event_type",
            "severity",
            "message",
            "robot_id",
            "job_id",
            "node_id",
            "details"
        ]
    );
}

#[test]
fn every_reference_event_type_serialises_as_its_dotted_name() {
    let reference = [
        "robot.started",
        "robot.stopped",
        "robot.registered",
        "connection.established",
        "connection.lost",
        "connection.reconnecting",
        "connection.failed",
        "job.received",
        "job.claimed",
        "job.started",
        "job.completed",
        "job.failed",
        "job.cancelled",
        "job.cached",
        "job.synced",
        "execution.workflow_loaded",
        "execution.node_started",
        "execution.node_completed",
        "execution.node_failed",
        "execution.node_skipped",
        "execution.node_retried",
        "checkpoint.saved",
        "checkpoint.restored",
        "checkpoint.cleared",
        "error.transient",
        "error.permanent",
        "error.unknown",
        "security.credential_validated",
        "security.credential_invalid",
        "security.access_denied",
        "circuit.opened",
        "circuit.half_open",
        "circuit.closed",
    ];
    let names: Vec<&str> = AuditEvent::ALL.iter().map(|e| e.as_str()).collect();
    assert_eq!(names, reference);
    for event in AuditEvent::ALL {
        let text = serde_json::to_string(event).unwrap();
        assert_eq!(text, format!("\"{}\"", event.as_str()));
        let back: AuditEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, *event);
        assert_eq!(event.to_string(), event.as_str());
    }
}

#[test]
fn severities_are_ordered_and_lowercase() {
    let all = [
        Severity::Debug,
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];
    for pair in all.windows(2) {
        assert!(pair[0] < pair[1], "{:?} < {:?}", pair[0], pair[1]);
    }
    let names: Vec<String> = all
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            r#""debug""#,
            r#""info""#,
            r#""warning""#,
            r#""error""#,
            r#""critical""#
        ]
    );
    let levels: Vec<log::Level> = all.iter().map(|s| s.log_level()).collect();
    assert_eq!(
        levels,
        [
            log::Level::Debug,
            log::Level::Info,
            log::Level::Warn,
            log::Level::Error,
            log::Level::Error
        ]
    );
}

#[test]
fn convenience_methods_use_the_reference_messages_and_details() {
    type Call = fn(&mut AuditLogger);
    /// The call, then the entry it must produce: event, severity, message, job id, details.
    type Case = (
        Call,
        AuditEvent,
        Severity,
        String,
        Option<&'static str>,
        Value,
    );
    let long_error = "e".repeat(250);
    let cases: Vec<Case> = vec![
        (
            |l| l.robot_started(json!({"robot_name": "r"})),
            AuditEvent::RobotStarted,
            Severity::Info,
            "Robot agent started".into(),
            None,
            json!({"robot_name": "r"}),
        ),
        (
            |l| l.robot_stopped("Graceful shutdown"),
            AuditEvent::RobotStopped,
            Severity::Info,
            "Robot agent stopped: Graceful shutdown".into(),
            None,
            json!({}),
        ),
        (
            |l| l.robot_stopped(""),
            AuditEvent::RobotStopped,
            Severity::Info,
            "Robot agent stopped".into(),
            None,
            json!({}),
        ),
        (
            |l| l.robot_registered(),
            AuditEvent::RobotRegistered,
            Severity::Info,
            "Robot registered with backend".into(),
            None,
            json!({}),
        ),
        (
            |l| l.connection_established(),
            AuditEvent::ConnectionEstablished,
            Severity::Info,
            "Connected to backend".into(),
            None,
            json!({}),
        ),
        (
            |l| l.connection_lost("reset by peer"),
            AuditEvent::ConnectionLost,
            Severity::Warning,
            "Connection lost: reset by peer".into(),
            None,
            json!({}),
        ),
        (
            |l| l.connection_reconnecting(3),
            AuditEvent::ConnectionReconnecting,
            Severity::Info,
            "Reconnection attempt 3".into(),
            None,
            json!({"attempt": 3}),
        ),
        (
            |l| l.connection_failed("refused"),
            AuditEvent::ConnectionFailed,
            Severity::Error,
            "Connection failed: refused".into(),
            None,
            json!({"error": "refused"}),
        ),
        (
            |l| l.job_received("j1", "Invoices"),
            AuditEvent::JobReceived,
            Severity::Info,
            "Received job: Invoices".into(),
            Some("j1"),
            json!({"workflow_name": "Invoices"}),
        ),
        (
            |l| l.job_claimed("j1"),
            AuditEvent::JobClaimed,
            Severity::Info,
            "Job claimed for execution".into(),
            Some("j1"),
            json!({}),
        ),
        (
            |l| l.job_started("j1", 12),
            AuditEvent::JobStarted,
            Severity::Info,
            "Job execution started (12 nodes)".into(),
            Some("j1"),
            json!({"total_nodes": 12}),
        ),
        (
            |l| l.job_completed("j1", 5321.7),
            AuditEvent::JobCompleted,
            Severity::Info,
            "Job completed successfully in 5322ms".into(),
            Some("j1"),
            json!({"duration_ms": 5321.7}),
        ),
        (
            |l| l.job_failed("j1", &"e".repeat(250), 10.0),
            AuditEvent::JobFailed,
            Severity::Error,
            format!("Job failed: {}", &long_error[..200]),
            Some("j1"),
            json!({"error": long_error, "duration_ms": 10.0}),
        ),
        (
            |l| l.job_cancelled("j1", "user request"),
            AuditEvent::JobCancelled,
            Severity::Warning,
            "Job cancelled: user request".into(),
            Some("j1"),
            json!({}),
        ),
        (
            |l| l.checkpoint_restored("j1", "node-7"),
            AuditEvent::CheckpointRestored,
            Severity::Info,
            "Restored from checkpoint: j1".into(),
            Some("j1"),
            json!({"checkpoint_id": "j1", "restored_at_node": "node-7"}),
        ),
        (
            |l| l.error_logged("transient", "timeout"),
            AuditEvent::ErrorTransient,
            Severity::Error,
            "Error (transient): timeout".into(),
            None,
            json!({"category": "transient", "error": "timeout"}),
        ),
        (
            |l| l.error_logged("permanent", "bad workflow"),
            AuditEvent::ErrorPermanent,
            Severity::Error,
            "Error (permanent): bad workflow".into(),
            None,
            json!({"category": "permanent", "error": "bad workflow"}),
        ),
        (
            |l| l.error_logged("weird", "?"),
            AuditEvent::ErrorUnknown,
            Severity::Error,
            "Error (weird): ?".into(),
            None,
            json!({"category": "weird", "error": "?"}),
        ),
        (
            |l| l.circuit_state_changed("websocket", BreakerState::Open),
            AuditEvent::CircuitOpened,
            Severity::Warning,
            "Circuit breaker 'websocket' -> open".into(),
            None,
            json!({"circuit_name": "websocket", "state": "open"}),
        ),
        (
            |l| l.circuit_state_changed("websocket", BreakerState::HalfOpen),
            AuditEvent::CircuitHalfOpen,
            Severity::Info,
            "Circuit breaker 'websocket' -> half_open".into(),
            None,
            json!({"circuit_name": "websocket", "state": "half_open"}),
        ),
        (
            |l| l.circuit_state_changed("websocket", BreakerState::Closed),
            AuditEvent::CircuitClosed,
            Severity::Info,
            "Circuit breaker 'websocket' -> closed".into(),
            None,
            json!({"circuit_name": "websocket", "state": "closed"}),
        ),
        (
            |l| l.access_denied("HTTP 403 at the handshake"),
            AuditEvent::AccessDenied,
            Severity::Error,
            "Access denied: HTTP 403 at the handshake".into(),
            None,
            json!({"reason": "HTTP 403 at the handshake"}),
        ),
        (
            |l| l.credential_invalid("Supabase URL must use HTTPS"),
            AuditEvent::CredentialInvalid,
            Severity::Error,
            "Credential validation failed: Supabase URL must use HTTPS".into(),
            None,
            json!({}),
        ),
    ];
    for (call, event, severity, message, job_id, details) in cases {
        let mut logger = AuditLogger::in_memory("r", &[]);
        call(&mut logger);
        let got = logger.get_recent(10);
        assert_eq!(got.len(), 1, "{message}");
        let e = &got[0];
        assert_eq!(
            (
                e.event_type,
                e.severity,
                e.message.as_str(),
                e.job_id.as_deref()
            ),
            (event, severity, message.as_str(), job_id),
        );
        assert_eq!(e.details, details, "{message}");
    }
}

#[test]
fn query_filters_by_type_severity_job_and_since_newest_first_with_a_limit() {
    let mut logger = AuditLogger::in_memory("robot-1", &[]);
    let t0 = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let crafted = [
        entry_at(at(0), AuditEvent::RobotStarted, Severity::Info, None),
        entry_at(at(1), AuditEvent::JobStarted, Severity::Info, Some("a")),
        entry_at(at(2), AuditEvent::NodeStarted, Severity::Debug, Some("a")),
        entry_at(at(3), AuditEvent::JobFailed, Severity::Error, Some("a")),
        entry_at(at(4), AuditEvent::JobStarted, Severity::Info, Some("b")),
        entry_at(at(5), AuditEvent::ConnectionLost, Severity::Warning, None),
        entry_at(at(6), AuditEvent::JobCompleted, Severity::Info, Some("b")),
        entry_at(at(7), AuditEvent::RobotStopped, Severity::Critical, None),
    ];
    logger.ring.extend(crafted.iter().cloned());
    let secs = |q: AuditQuery| -> Vec<i64> {
        logger
            .query(&q)
            .iter()
            .map(|e| (e.timestamp - t0).num_seconds())
            .collect()
    };
    assert_eq!(secs(AuditQuery::default()), [7, 6, 5, 4, 3, 2, 1, 0]);
    assert_eq!(
        secs(AuditQuery {
            limit: 3,
            ..AuditQuery::default()
        }),
        [7, 6, 5]
    );
    assert_eq!(
        secs(AuditQuery {
            event_types: vec![AuditEvent::JobStarted, AuditEvent::JobCompleted],
            ..AuditQuery::default()
        }),
        [6, 4, 1]
    );
    assert_eq!(
        secs(AuditQuery {
            min_severity: Some(Severity::Warning),
            ..AuditQuery::default()
        }),
        [7, 5, 3]
    );
    assert_eq!(
        secs(AuditQuery {
            min_severity: Some(Severity::Info),
            ..AuditQuery::default()
        }),
        [7, 6, 5, 4, 3, 1, 0]
    );
    assert_eq!(
        secs(AuditQuery {
            job_id: Some("a".into()),
            ..AuditQuery::default()
        }),
        [3, 2, 1]
    );
    assert_eq!(
        secs(AuditQuery {
            since: Some(at(5)),
            ..AuditQuery::default()
        }),
        [7, 6, 5]
    );
    assert_eq!(
        secs(AuditQuery {
            job_id: Some("b".into()),
            min_severity: Some(Severity::Info),
            since: Some(at(1)),
            limit: 1,
            ..AuditQuery::default()
        }),
        [6]
    );
    let recent: Vec<i64> = logger
        .get_recent(2)
        .iter()
        .map(|e| (e.timestamp - t0).num_seconds())
        .collect();
    assert_eq!(recent, [7, 6]);
}

#[test]
fn the_ring_keeps_the_last_1000_entries() {
    let mut logger = AuditLogger::in_memory("r", &[]);
    for n in 0..RING_CAPACITY + 5 {
        logger.log(
            AuditEvent::NodeCompleted,
            Severity::Debug,
            &n.to_string(),
            None,
            None,
            Value::Null,
        );
    }
    let all = logger.get_recent(usize::MAX);
    assert_eq!(all.len(), RING_CAPACITY);
    assert_eq!(all[0].message, (RING_CAPACITY + 4).to_string());
    assert_eq!(all[RING_CAPACITY - 1].message, "5");
}

#[test]
fn rotation_at_the_size_limit_keeps_backup_count_files_and_the_newest_entries() {
    // Measure one line: every fixed-width entry has the same length.
    let probe = tempfile::tempdir().unwrap();
    let mut logger = AuditLogger::new(config(probe.path(), u64::MAX, 5)).unwrap();
    log_fixed_width(&mut logger, 0..1);
    let line_len = fs::metadata(logger.current_file().unwrap()).unwrap().len();

    // Three lines reach the limit exactly: files hold entries 0-2, 3-5, ... and the base
    // file ends with 18-19.
    let dir = tempfile::tempdir().unwrap();
    let mut logger = AuditLogger::new(config(dir.path(), 3 * line_len, 2)).unwrap();
    log_fixed_width(&mut logger, 0..20);
    let base = logger.current_file().unwrap().to_path_buf();
    assert_eq!(messages(&entries_in(&base)), ["entry 18", "entry 19"]);

    let names = audit_file_names(dir.path());
    assert_eq!(names.len(), 3, "{names:?}");
    let date = base.file_name().unwrap().to_str().unwrap();
    let date = date
        .strip_prefix("audit_")
        .and_then(|d| d.strip_suffix(".jsonl"))
        .unwrap();
    let mut backups: Vec<Vec<String>> = Vec::new();
    for name in &names {
        let path = dir.path().join(name);
        if path == base {
            continue;
        }
        // audit_<date>.HHMMSS.jsonl or audit_<date>.HHMMSS_N.jsonl
        let middle = name
            .strip_prefix(&format!("audit_{date}."))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .unwrap_or_else(|| panic!("unexpected name {name}"));
        assert!(middle[..6].bytes().all(|b| b.is_ascii_digit()), "{name}");
        assert_eq!(fs::metadata(&path).unwrap().len(), 3 * line_len, "{name}");
        backups.push(messages(&entries_in(&path)));
    }
    backups.sort();
    assert_eq!(
        backups,
        [
            ["entry 12", "entry 13", "entry 14"],
            ["entry 15", "entry 16", "entry 17"]
        ]
    );

    // The whole trail on disk, newest first.
    let on_disk = read_dir(
        dir.path(),
        &AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        },
    )
    .unwrap();
    let expected: Vec<String> = (12..20).rev().map(|n| format!("entry {n:02}")).collect();
    assert_eq!(messages(&on_disk), expected);
}

#[test]
fn pruning_never_deletes_the_current_file_and_same_second_rotations_do_not_collide() {
    // backup_count 0 and a one-byte limit: every write rotates and deletes every other file.
    let dir = tempfile::tempdir().unwrap();
    let mut logger = AuditLogger::new(config(dir.path(), 1, 0)).unwrap();
    log_fixed_width(&mut logger, 0..5);
    let base = logger.current_file().unwrap().to_path_buf();
    assert_eq!(
        audit_file_names(dir.path()),
        [base.file_name().unwrap().to_str().unwrap()]
    );
    assert_eq!(messages(&entries_in(&base)), ["entry 04"]);

    // Many rotations in the same second with room for all backups: nothing is overwritten.
    let dir = tempfile::tempdir().unwrap();
    let mut logger = AuditLogger::new(config(dir.path(), 1, 100)).unwrap();
    // Names a rotation in the next seconds could pick are already taken.
    let stem = logger
        .current_file()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(".jsonl")
        .to_string();
    let now = Utc::now();
    let mut squatters = Vec::new();
    for s in 0..3 {
        let t = now + chrono::Duration::seconds(s);
        let path = dir
            .path()
            .join(format!("{stem}.{}.jsonl", t.format("%H%M%S")));
        fs::write(&path, format!("squatter {s}\n")).unwrap();
        squatters.push((path, format!("squatter {s}\n")));
    }
    log_fixed_width(&mut logger, 0..10);
    for (path, content) in &squatters {
        assert_eq!(&fs::read_to_string(path).unwrap(), content);
    }
    let all = read_dir(dir.path(), &AuditQuery::default()).unwrap();
    let expected: Vec<String> = (0..10).rev().map(|n| format!("entry {n:02}")).collect();
    assert_eq!(messages(&all), expected);
    // 3 squatters + 9 rotated files + the base file.
    assert_eq!(audit_file_names(dir.path()).len(), 13);
}

#[test]
fn the_size_is_seeded_from_an_existing_file() {
    let old = format!("{}\n", "x".repeat(999));
    // At the limit already: the first entry rotates the old content away.
    let dir = tempfile::tempdir().unwrap();
    let today = base_path(dir.path(), Utc::now());
    fs::write(&today, &old).unwrap();
    let mut logger = AuditLogger::new(config(dir.path(), 1000, 5)).unwrap();
    assert_eq!(logger.current_file(), Some(today.as_path()));
    log_fixed_width(&mut logger, 0..1);
    let base = logger.current_file().unwrap().to_path_buf();
    assert_eq!(messages(&entries_in(&base)), ["entry 00"]);
    let names = audit_file_names(dir.path());
    assert_eq!(names.len(), 2, "{names:?}");
    let rotated = names
        .iter()
        .map(|n| dir.path().join(n))
        .find(|p| *p != base)
        .unwrap();
    assert_eq!(fs::read_to_string(rotated).unwrap(), old);

    // Below the limit: appended after the old content, no rotation.
    let dir = tempfile::tempdir().unwrap();
    let today = base_path(dir.path(), Utc::now());
    fs::write(&today, &old).unwrap();
    let mut logger = AuditLogger::new(config(dir.path(), 100_000, 5)).unwrap();
    log_fixed_width(&mut logger, 0..1);
    assert_eq!(audit_file_names(dir.path()).len(), 1);
    let text = fs::read_to_string(&today).unwrap();
    assert!(text.starts_with(&old));
    assert!(text[old.len()..].contains("\"entry 00\""));
}

#[test]
fn secrets_are_scrubbed_from_messages_ids_and_nested_details_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let key = "sk-live-0123456789abcdef";
    let mut cfg = config(dir.path(), u64::MAX, 5);
    cfg.secrets = vec![
        key.to_string(),
        "tok-XYZ".to_string(),
        "abc".to_string(), // too short: ignored
        String::new(),
        "0123".to_string(), // inside the key: the key is scrubbed whole first
    ];
    let mut logger = AuditLogger::new(cfg.clone()).unwrap();
    assert!(!format!("{logger:?}").contains(key));
    assert!(!format!("{cfg:?}").contains(key));
    logger.log(
        AuditEvent::AccessDenied,
        Severity::Error,
        &format!("refused key {key} (abc), twice: {key}"),
        Some("job-tok-XYZ"),
        None,
        json!({
            "headers": {"Authorization": format!("Bearer {key}")},
            "list": ["a tok-XYZ b", 5, null, ["deep 0123"]],
            key: "as a key",
            "n": 123
        }),
    );
    let e = &logger.get_recent(1)[0];
    assert_eq!(e.message, "refused key *** (abc), twice: ***");
    assert_eq!(e.job_id.as_deref(), Some("job-***"));
    assert_eq!(
        e.details,
        json!({
            "headers": {"Authorization": "Bearer ***"},
            "list": ["a *** b", 5, null, ["deep ***"]],
            "***": "as a key",
            "n": 123
        })
    );
    let bytes = fs::read(logger.current_file().unwrap()).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains("sk-live"), "{text}");
    assert!(!text.contains("tok-XYZ"), "{text}");
    assert!(text.contains("refused key *** (abc)"), "{text}");
}

#[test]
fn read_dir_round_trips_what_was_logged_and_skips_damaged_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut logger = AuditLogger::new(config(dir.path(), 600, 10)).unwrap();
    logger.robot_started(json!({"robot_name": "r"}));
    for job in ["a", "b", "c"] {
        logger.job_received(job, "wf");
        logger.job_started(job, 3);
        logger.log(
            AuditEvent::NodeStarted,
            Severity::Debug,
            "Node started: LogNode",
            Some(job),
            Some("n1"),
            json!({"node_type": "LogNode"}),
        );
    }
    logger.job_failed("b", "boom", 12.5);
    logger.job_completed("a", 40.0);
    logger.robot_stopped("graceful_shutdown");
    assert!(
        audit_file_names(dir.path()).len() > 1,
        "the trail should span rotated files"
    );
    // A torn line, a foreign line and blank lines are skipped.
    let base = logger.current_file().unwrap().to_path_buf();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&base)
        .unwrap();
    f.write_all(b"not json\n\n{\"timestamp\":\"2025-").unwrap();
    drop(f);

    let queries = [
        AuditQuery::default(),
        AuditQuery {
            job_id: Some("b".into()),
            ..AuditQuery::default()
        },
        AuditQuery {
            min_severity: Some(Severity::Info),
            event_types: vec![AuditEvent::JobStarted, AuditEvent::JobFailed],
            ..AuditQuery::default()
        },
        AuditQuery {
            limit: 4,
            ..AuditQuery::default()
        },
    ];
    for q in &queries {
        let from_disk = read_dir(dir.path(), q).unwrap();
        assert_eq!(from_disk, logger.query(q), "{q:?}");
        assert!(!from_disk.is_empty());
    }
    assert_eq!(
        read_dir(dir.path(), &AuditQuery::default()).unwrap().len(),
        13
    );

    let missing = dir.path().join("nope");
    let err = read_dir(&missing, &AuditQuery::default()).unwrap_err();
    assert!(matches!(err, AuditError::ReadDir { .. }));
    assert!(
        err.to_string().contains("cannot list the audit directory"),
        "{err}"
    );
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn an_unusable_dir_is_a_clear_error_from_new() {
    // A path below a regular file cannot be created, whoever runs the test (root included).
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    fs::write(&file, "x").unwrap();
    let dir = file.join("audit");
    let err = AuditLogger::new(config(&dir, 1000, 5)).unwrap_err();
    assert!(matches!(err, AuditError::CreateDir { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot create the audit directory "),
        "{text}"
    );
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(text.contains("audit_enabled = false"), "{text}");

    // The directory exists but today's file cannot be opened (it is a directory).
    let dir = tempfile::tempdir().unwrap();
    let today = base_path(dir.path(), Utc::now());
    fs::create_dir(&today).unwrap();
    let err = AuditLogger::new(config(dir.path(), 1000, 5)).unwrap_err();
    assert!(matches!(err, AuditError::Open { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("cannot open the audit file "), "{text}");
    assert!(text.contains(&today.display().to_string()), "{text}");
}

#[test]
fn a_vanished_dir_keeps_entries_in_the_ring_and_writing_resumes_when_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    // A one-byte limit: every write first rotates, so the directory is touched each time.
    let mut logger = AuditLogger::new(config(&dir, 1, 5)).unwrap();
    log_fixed_width(&mut logger, 0..1);
    fs::remove_dir_all(&dir).unwrap();
    log_fixed_width(&mut logger, 1..3);
    assert_eq!(logger.get_recent(10).len(), 3);
    assert!(!dir.exists());

    fs::create_dir_all(&dir).unwrap();
    log_fixed_width(&mut logger, 3..4);
    let on_disk = read_dir(&dir, &AuditQuery::default()).unwrap();
    assert_eq!(messages(&on_disk), ["entry 03"]);
    assert_eq!(logger.get_recent(10).len(), 4);
}

#[test]
fn an_in_memory_logger_writes_no_file() {
    let logger = AuditLogger::in_memory("r", &[]);
    assert_eq!(logger.current_file(), None);
}

#[test]
fn rotated_names_within_one_second_keep_growing_after_pruning() {
    // One backup kept, every write rotates: the backup's name changes at each write. Within one
    // second the collision suffix must grow even though pruning frees the earlier names,
    // otherwise a newer backup would sort as older when mtimes tie.
    let dir = tempfile::tempdir().unwrap();
    let mut logger = AuditLogger::new(config(dir.path(), 1, 1)).unwrap();
    log_fixed_width(&mut logger, 0..1);
    let mut backups: Vec<(String, u32)> = Vec::new();
    for n in 1..6 {
        log_fixed_width(&mut logger, n..n + 1);
        let files = list_audit_files(dir.path()).unwrap();
        let current = logger.current_file().unwrap();
        let others: Vec<&AuditFileInfo> = files.iter().filter(|f| f.path != current).collect();
        assert_eq!(others.len(), 1);
        assert_eq!(
            messages(&entries_in(&others[0].path)),
            [format!("entry {:02}", n - 1)]
        );
        backups.push(others[0].name_key.clone());
    }
    for pair in backups.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert!(pair[0].1 < pair[1].1, "{backups:?}");
        }
    }
}

#[test]
fn audit_files_with_equal_mtimes_are_ordered_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "audit_2025-01-02.jsonl",
        "audit_2025-01-01.120000_10.jsonl",
        "audit_2025-01-01.120000_9.jsonl",
        "audit_2025-01-01.120000.jsonl",
        "audit_2025-01-01.115959.jsonl",
    ];
    let same = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for name in names {
        let f = File::create(dir.path().join(name)).unwrap();
        f.set_modified(same).unwrap();
    }
    fs::write(dir.path().join("other.jsonl"), "x").unwrap();
    fs::create_dir(dir.path().join("audit_dir.jsonl")).unwrap();
    let order: Vec<String> = list_audit_files(dir.path())
        .unwrap()
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        order,
        [
            "audit_2025-01-01.115959.jsonl",
            "audit_2025-01-01.120000.jsonl",
            "audit_2025-01-01.120000_9.jsonl",
            "audit_2025-01-01.120000_10.jsonl",
            "audit_2025-01-02.jsonl",
        ]
    );
}

#[test]
fn url_passwords_and_process_secrets_are_scrubbed_too() {
    crate::redact::register_secrets(["audit-process-secret-9"]);
    let mut logger = AuditLogger::in_memory("r1", &[]);
    logger.access_denied("ws://bot:pw123456@host/ws refused audit-process-secret-9");
    let entry = logger.get_recent(1).pop().unwrap();
    let text = serde_json::to_string(&entry).unwrap();
    assert!(
        !text.contains("pw123456") && !text.contains("audit-process-secret-9"),
        "{text}"
    );
    assert!(text.contains("ws://bot:****@host/ws refused ***"), "{text}");
}
