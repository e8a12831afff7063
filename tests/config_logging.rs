//! The process-wide logger: file output format, and that a second `init` is a harmless no-op.
//! (Its own test binary, because a process can install only one logger.)

use casare_robot::logging::{self, LOG_FILE_NAME};
use log::LevelFilter;

#[test]
fn init_writes_formatted_records_to_the_log_file_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_dir = dir.path().join("logs");
    let path = logging::init(
        LevelFilter::Debug,
        Some(&log_dir),
        None,
        logging::Rotation::default(),
    )
    .expect("logger installs");
    assert_eq!(path, Some(log_dir.join(LOG_FILE_NAME)));

    log::info!(target: "casare_robot::agent", "robot started");
    log::debug!(target: "casare_robot::link", "frame received");
    log::trace!("filtered out at debug level");
    log::logger().flush();

    let again = logging::init(
        LevelFilter::Trace,
        None,
        Some(LevelFilter::Trace),
        logging::Rotation::default(),
    )
    .expect("second call is a no-op");
    assert_eq!(again, path);
    assert_eq!(log::max_level(), LevelFilter::Debug);

    let text = std::fs::read_to_string(log_dir.join(LOG_FILE_NAME)).expect("log file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // Info: time, padded level, message, no target.
    assert!(lines[0].contains("[INFO ] robot started"), "{text}");
    assert!(!lines[0].contains("casare_robot::agent"), "{text}");
    // Debug: target shown.
    assert!(lines[1].contains("[DEBUG]"), "{text}");
    assert!(lines[1].contains("casare_robot::link"), "{text}");
    assert!(lines[1].contains("frame received"), "{text}");
    // RFC 3339 time stamp first: YYYY-MM-DDTHH:MM:SS...
    let stamp = lines[0].split_whitespace().next().unwrap_or_default();
    assert_eq!(stamp.as_bytes().get(10), Some(&b'T'), "{text}");
}
