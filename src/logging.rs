//! Logging setup: one process-wide `simplelog` logger writing to stderr and/or
//! `<log_dir>/casare-robot.log` (appended), with RFC 3339 times, padded levels, and the target shown
//! only for debug and trace records.
//!
//! [`init`] installs the logger once; later calls are no-ops. It never panics: when the log file
//! cannot be opened, records go to stderr and the caller gets [`LoggingError::FileUnavailable`] to
//! print as a warning. At trace level the `ureq` targets are silenced, because ureq's trace output
//! prints HTTP headers (and so API keys) unredacted.

use log::LevelFilter;
use simplelog::{CombinedLogger, ConfigBuilder, LevelPadding, SharedLogger, WriteLogger};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Name of the log file inside the log directory.
pub const LOG_FILE_NAME: &str = "casare-robot.log";

/// The log file chosen by the first [`init`] call (`None`: no file).
static INSTALLED: OnceLock<Option<PathBuf>> = OnceLock::new();

/// A logging setup problem; the logger still works (on stderr) when one is returned.
#[derive(Debug)]
pub enum LoggingError {
    /// The log file (or its directory) could not be opened; records go to stderr only.
    FileUnavailable { path: PathBuf, message: String },
}

impl fmt::Display for LoggingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoggingError::FileUnavailable { path, message } => write!(
                f,
                "cannot open log file {}: {message}; logging to stderr only",
                path.display()
            ),
        }
    }
}

impl std::error::Error for LoggingError {}

/// Installs the process logger: records at `level` and above go to `<log_dir>/casare-robot.log`
/// (when `log_dir` is given), and records at `stderr` and above go to stderr (when set). If the
/// file cannot be opened, stderr gets records at `level` instead and the error is returned.
/// Only the first call in a process installs anything; later calls return the first result.
pub fn init(
    level: LevelFilter,
    log_dir: Option<&Path>,
    stderr: Option<LevelFilter>,
) -> Result<Option<PathBuf>, LoggingError> {
    let mut file_error = None;
    let installed = INSTALLED.get_or_init(|| {
        let config = log_config(level);
        let mut loggers: Vec<Box<dyn SharedLogger>> = Vec::new();
        let mut file_path = None;
        if let Some(dir) = log_dir {
            match open_log_file(dir) {
                Ok((file, path)) => {
                    // One write per line instead of one per piece of the line.
                    let file = std::io::LineWriter::new(file);
                    loggers.push(WriteLogger::new(level, config.clone(), file));
                    file_path = Some(path);
                }
                Err(e) => file_error = Some(e),
            }
        }
        let stderr_level = if file_error.is_some() {
            Some(stderr.unwrap_or(level).max(level))
        } else {
            stderr
        };
        if let Some(stderr_level) = stderr_level {
            loggers.push(WriteLogger::new(
                stderr_level,
                config,
                std::io::LineWriter::new(std::io::stderr()),
            ));
        }
        if !loggers.is_empty() {
            // An error here means another logger is installed (e.g. by a test harness): keep it.
            let _ = CombinedLogger::init(loggers);
        }
        file_path
    });
    match file_error {
        Some(e) => Err(e),
        None => Ok(installed.clone()),
    }
}

fn log_config(level: LevelFilter) -> simplelog::Config {
    let mut builder = ConfigBuilder::new();
    builder
        .set_time_format_rfc3339()
        .set_level_padding(LevelPadding::Right)
        .set_target_level(LevelFilter::Debug);
    // Fails in multi-threaded processes on some Unixes; the times are then UTC, which is fine.
    let _ = builder.set_time_offset_to_local();
    if level == LevelFilter::Trace {
        builder.add_filter_ignore_str("ureq");
    }
    builder.build()
}

/// Creates `dir` if needed and opens `dir/casare-robot.log` for appending.
fn open_log_file(dir: &Path) -> Result<(File, PathBuf), LoggingError> {
    let path = dir.join(LOG_FILE_NAME);
    let unavailable = |e: std::io::Error| LoggingError::FileUnavailable {
        path: path.clone(),
        message: e.to_string().to_lowercase(),
    };
    std::fs::create_dir_all(dir).map_err(unavailable)?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(unavailable)?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn log_file_is_created_with_its_directory_and_appended() {
        let dir = tempfile::tempdir().expect("temp dir");
        let logs = dir.path().join("a").join("logs");
        for line in ["one\n", "two\n"] {
            let (mut file, path) = open_log_file(&logs).expect("log file opens");
            assert_eq!(path, logs.join(LOG_FILE_NAME));
            file.write_all(line.as_bytes()).expect("write");
        }
        let text = std::fs::read_to_string(logs.join(LOG_FILE_NAME)).expect("read");
        assert_eq!(text, "one\ntwo\n");
    }

    #[test]
    fn unopenable_log_file_names_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, "").expect("write");
        let error = open_log_file(&blocker).expect_err("a file is not a directory");
        let message = error.to_string();
        let expected = format!(
            "cannot open log file {}",
            blocker.join(LOG_FILE_NAME).display()
        );
        assert!(message.starts_with(&expected), "{message}");
        assert!(message.ends_with("; logging to stderr only"), "{message}");
    }
}
