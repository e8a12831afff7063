//! Logging setup: one process-wide `simplelog` logger writing to stderr and/or
//! `<log_dir>/casare-robot.log` (appended), with RFC 3339 times, padded levels, and the target shown
//! only for debug and trace records.
//!
//! The file rotates by size ([`Rotation`]): when a line would take it past `max_bytes`, it is
//! renamed `casare-robot.log.1` (older ones shift to `.2` … up to `backups`, the oldest is
//! deleted) and a new file starts. A record is never split across two files.
//!
//! Every record passes through one sink ([`clean_message`]) before any output: registered secrets
//! and URL passwords are masked ([`crate::redact`]), control characters are escaped (`\n` is
//! written `\\n`, so text from a job or a peer cannot forge log lines) and a message longer than
//! [`MAX_MESSAGE_CHARS`] is cut, saying how much was left out.
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

/// Longest message written (in characters); the rest is left out and counted.
pub const MAX_MESSAGE_CHARS: usize = 8 * 1024;

/// Name of the log file inside the log directory.
pub const LOG_FILE_NAME: &str = "casare-robot.log";

/// Size rotation of the log file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a line would take the file past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`casare-robot.log.1` is the newest); 0 keeps none.
    pub backups: u32,
}

impl Default for Rotation {
    fn default() -> Rotation {
        Rotation {
            max_bytes: 10 * 1024 * 1024,
            backups: 5,
        }
    }
}

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
    rotation: Rotation,
) -> Result<Option<PathBuf>, LoggingError> {
    let mut file_error = None;
    let installed = INSTALLED.get_or_init(|| {
        let config = log_config(level);
        let mut loggers: Vec<Box<dyn SharedLogger>> = Vec::new();
        let mut file_path = None;
        if let Some(dir) = log_dir {
            match open_log_file(dir) {
                Ok((file, path)) => {
                    let file = RotatingFile::new(file, path.clone(), rotation);
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
        if let Some(max) = loggers.iter().map(|l| l.level()).max() {
            let sink = CleaningSink {
                inner: CombinedLogger::new(loggers),
            };
            // An error here means another logger is installed (e.g. by a test harness): keep it.
            if log::set_boxed_logger(Box::new(sink)).is_ok() {
                log::set_max_level(max);
            }
        }
        file_path
    });
    match file_error {
        Some(e) => Err(e),
        None => Ok(installed.clone()),
    }
}

/// The process logger: cleans each record's message ([`clean_message`]), then hands it to the
/// file and stderr loggers.
struct CleaningSink {
    inner: Box<CombinedLogger>,
}

impl log::Log for CleaningSink {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        let clean = clean_message(&text);
        self.inner.log(
            &log::Record::builder()
                .metadata(record.metadata().clone())
                .args(format_args!("{clean}"))
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

/// A log message as written: secrets and URL passwords masked, control characters escaped
/// (`\n`, `\r`, `\t`, `\u{1b}`, ...), at most [`MAX_MESSAGE_CHARS`] characters plus a note of
/// how many were left out.
pub fn clean_message(text: &str) -> String {
    let scrubbed = crate::redact::scrub(text);
    let mut out = String::with_capacity(scrubbed.len().min(MAX_MESSAGE_CHARS + 32));
    for (kept, (idx, c)) in scrubbed.char_indices().enumerate() {
        if kept >= MAX_MESSAGE_CHARS {
            let left = scrubbed[idx..].chars().count();
            out.push_str(&format!("…[{left} more characters]"));
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&c.escape_unicode().to_string())
            }
            c => out.push(c),
        }
    }
    out
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
        // Both print request headers (API keys) at trace level.
        builder.add_filter_ignore_str("ureq");
        builder.add_filter_ignore_str("tungstenite");
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
    crate::private_fs::create_dir_all(dir).map_err(unavailable)?;
    let file = crate::private_fs::open_append(&path).map_err(unavailable)?;
    Ok((file, path))
}

/// The log file writer: buffers a record until its newline (one `write` per line), and rotates
/// by size between lines.
pub struct RotatingFile {
    file: File,
    path: PathBuf,
    size: u64,
    rotation: Rotation,
    pending: Vec<u8>,
    failed: bool,
}

impl RotatingFile {
    /// Over an open (append) file at `path`; the size is seeded from the file.
    pub fn new(file: File, path: PathBuf, rotation: Rotation) -> RotatingFile {
        let size = file.metadata().map_or(0, |m| m.len());
        RotatingFile {
            file,
            path,
            size,
            rotation,
            pending: Vec::new(),
            failed: false,
        }
    }

    fn backup(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.rotation.backups;
        if keep == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(self.backup(keep));
        for n in (1..keep).rev() {
            let from = self.backup(n);
            if from.exists() {
                std::fs::rename(&from, self.backup(n + 1))?;
            }
        }
        // Windows cannot rename an open file: let the handle go first.
        let placeholder = OpenOptions::new().append(true).open(&self.path)?;
        drop(std::mem::replace(&mut self.file, placeholder));
        std::fs::rename(&self.path, self.backup(1))?;
        self.file = crate::private_fs::open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.rotation.max_bytes {
            if let Err(e) = self.rotate() {
                if !self.failed {
                    self.failed = true;
                    // Not eprintln!: with stderr gone (a closed terminal) it would panic inside
                    // the logger, and the closed-output hook would end the process.
                    let _ = writeln!(
                        std::io::stderr(),
                        "warning: cannot rotate {}: {e}",
                        self.path.display()
                    );
                }
            }
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }
}

impl std::io::Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.write_line(&line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.write_line(&rest)?;
        }
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn messages_are_escaped_masked_and_bounded() {
        crate::redact::register_secrets(["logging-test-secret-42"]);
        for (text, expected) in [
            ("plain", "plain".to_string()),
            (
                "job a\nINFO  forged line\r\t\u{1b}[31m",
                "job a\\nINFO  forged line\\r\\t\\u{1b}[31m".to_string(),
            ),
            (
                "key logging-test-secret-42 at ws://u:pw@h/ws",
                "key *** at ws://u:****@h/ws".to_string(),
            ),
        ] {
            assert_eq!(clean_message(text), expected, "{text:?}");
        }
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        let cut = clean_message(&long);
        assert_eq!(
            cut,
            format!("{}…[10 more characters]", "é".repeat(MAX_MESSAGE_CHARS))
        );
    }

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
    fn the_file_rotates_at_the_size_limit_keeping_n_backups_and_whole_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (file, path) = open_log_file(dir.path()).expect("opens");
        let mut w = RotatingFile::new(
            file,
            path.clone(),
            Rotation {
                max_bytes: 100,
                backups: 2,
            },
        );
        // 30 lines of 25 bytes, each written in two pieces (as the logger does).
        for i in 0..30 {
            write!(w, "line {i:02} ").unwrap();
            writeln!(w, "{}", "x".repeat(15)).unwrap();
        }
        w.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let current = read(&path);
        let b1 = read(&dir.path().join("casare-robot.log.1"));
        let b2 = read(&dir.path().join("casare-robot.log.2"));
        assert!(
            !dir.path().join("casare-robot.log.3").exists(),
            "only 2 backups"
        );
        for text in [&current, &b1, &b2] {
            assert!(text.len() <= 100, "{text:?}");
            assert!(text.lines().all(|l| l.len() == 23), "whole lines: {text:?}");
        }
        assert!(current.ends_with("line 29 xxxxxxxxxxxxxxx\n"), "{current}");
        assert!(b1.starts_with("line 24"), "newest backup first: {b1}");
        assert!(b2.starts_with("line 20"), "{b2}");
        // A new writer on an existing file keeps counting from its size.
        let (file, path) = open_log_file(dir.path()).expect("opens");
        let mut again = RotatingFile::new(
            file,
            path.clone(),
            Rotation {
                max_bytes: 100,
                backups: 2,
            },
        );
        writeln!(again, "{}", "y".repeat(60)).unwrap();
        assert!(
            read(&path).starts_with("yyyy"),
            "rotated before the first write"
        );
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
