//! Durable state: one SQLite file (`casare-robot.db`) in the data directory, WAL mode.
//!
//! Owns the connection, the schema and its migrations, and the mapping of SQLite failures to
//! [`StoreError`] with the predicates callers need (`is_corrupt`, `is_full`, `is_read_only`).
//! A database file that SQLite says is corrupt or not a database is moved aside
//! (`casare-robot.db.corrupt-<unix seconds>`) and a fresh one is created, so a damaged file can
//! never put the robot into a crash loop. Checkpoints live in [`checkpoint`]; the job store and
//! outbox in [`jobs`].
//!
//! Durability: checkpoint writes use `synchronous=NORMAL` (in WAL mode a process crash loses
//! nothing; a power cut can lose the most recent checkpoints, which only means re-executing the
//! nodes since the last durable one).

pub mod checkpoint;
pub mod jobs;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File name of the store inside the data directory.
pub const DB_FILE: &str = "casare-robot.db";

/// Current schema version. 4 (the resume counter step): `jobs.resume_attempts`.
pub const SCHEMA_VERSION: i64 = 4;

/// A store failure.
#[derive(Debug)]
pub enum StoreError {
    /// The data directory or database file could not be created or opened.
    Open {
        /// The path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The disk (or quota) is full.
    Full(String),
    /// The database or the data directory is read-only.
    ReadOnly(String),
    /// Stored data could not be decoded.
    Corrupt(String),
    /// Another process holds the store (a running robot or `run --job-id`).
    Busy(String),
    /// Any other SQLite error.
    Sql(String),
}

impl StoreError {
    /// True when stored data is damaged (the caller should discard it and start clean).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StoreError::Corrupt(_))
    }
    /// True when the disk is full.
    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Full(_))
    }
    /// True when nothing can be written.
    pub fn is_read_only(&self) -> bool {
        matches!(self, StoreError::ReadOnly(_))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open { path, message } => {
                write!(f, "cannot open the store at {}: {message}", path.display())
            }
            StoreError::Full(m) => write!(f, "the disk is full: {m}"),
            StoreError::ReadOnly(m) => write!(f, "the store is read-only: {m}"),
            StoreError::Corrupt(m) => write!(f, "stored data is damaged: {m}"),
            StoreError::Busy(m) => write!(
                f,
                "the store is in use by another robot process ({m}); try again when it ends"
            ),
            StoreError::Sql(m) => write!(f, "store error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        let text = e.to_string();
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full(text),
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly(text),
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt(text),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy(text),
            _ => StoreError::Sql(text),
        }
    }
}

/// A store shared between threads (the daemon's workers save checkpoints through it).
pub type SharedStore = std::sync::Arc<parking_lot::Mutex<Store>>;

/// The robot's durable store.
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
    counters: jobs::StoreCounters,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (or create) the store in `data_dir`. A damaged database is moved aside and replaced.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        crate::private_fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.to_path_buf(),
            message: e.to_string().to_lowercase(),
        })?;
        let path = data_dir.join(DB_FILE);
        match Store::open_file(&path) {
            Ok(store) => Ok(store),
            Err(StoreError::Corrupt(why)) => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let aside = path.with_file_name(format!("{DB_FILE}.corrupt-{stamp}"));
                log::warn!(
                    "store {} is damaged ({why}); moved to {} and starting a new one",
                    path.display(),
                    aside.display()
                );
                std::fs::rename(&path, &aside).map_err(|e| StoreError::Open {
                    path: path.clone(),
                    message: format!("damaged ({why}) and cannot be moved aside: {e}"),
                })?;
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(path.with_file_name(format!("{DB_FILE}{suffix}")));
                }
                Store::open_file(&path)
            }
            Err(e) => Err(e),
        }
    }

    fn open_file(path: &Path) -> Result<Store, StoreError> {
        // Owner-only; SQLite gives its -wal and -shm files the database file's mode.
        crate::private_fs::open_append(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string().to_lowercase(),
        })?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|e| match StoreError::from(e) {
                StoreError::Sql(message) => StoreError::Open {
                    path: path.to_path_buf(),
                    message,
                },
                other => other,
            })?;
        conn.busy_timeout(Duration::from_millis(500))?;
        // journal_mode returns a row; query_row reads it (and surfaces NOTADB on a bad file).
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!(
                "store {}: WAL mode unavailable (journal_mode={mode})",
                path.display()
            );
        }
        // One process owns the store: holding the lock for the connection's life saves six
        // fcntl calls per transaction (the largest cost of a per-node checkpoint). Another
        // process opening the store while it is held gets `StoreError::Busy`.
        conn.execute_batch(
            "PRAGMA locking_mode=EXCLUSIVE; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;
             PRAGMA wal_autocheckpoint=4000; PRAGMA journal_size_limit=67108864;",
        )?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            counters: jobs::StoreCounters::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// A store in memory: the same behaviour without durability. The daemon falls back to it
    /// when the data directory is unusable, so a read-only or full disk is a loud warning and
    /// not a crash loop.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch("PRAGMA foreign_keys=ON;")?;
        let mut store = Store {
            conn,
            path: PathBuf::from(":memory:"),
            counters: jobs::StoreCounters::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// False for an in-memory store.
    pub fn is_durable(&self) -> bool {
        self.path.as_os_str() != ":memory:"
    }

    /// A value from the `meta` table.
    pub fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Set a value in the `meta` table (durably).
    pub fn meta_set(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
            [key, value],
        )?;
        Ok(())
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
        )?;
        let version: i64 = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get::<_, String>(0),
            )
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(StoreError::Open {
                path: self.path.clone(),
                message: format!(
                    "schema version {version} is newer than this robot understands ({SCHEMA_VERSION}); use a newer robot"
                ),
            });
        }
        // Every table is `CREATE TABLE IF NOT EXISTS`: applying the schema is idempotent.
        self.conn.execute_batch(checkpoint::SCHEMA)?;
        self.conn.execute_batch(jobs::SCHEMA)?;
        if version < SCHEMA_VERSION {
            let tx = self.conn.transaction()?;
            jobs::migrate_completed_jobs(&tx)?;
            jobs::migrate_resume_attempts(&tx)?;
            tx.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
            tx.commit()?;
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch, as a float.
pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_the_directory_and_schema_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        let store = Store::open(&data).unwrap();
        assert!(store.path().exists());
        drop(store);
        let store = Store::open(&data).unwrap();
        let v: String = store
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION.to_string());
    }

    #[test]
    fn a_second_opener_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Busy(_)), "{err:?}");
        assert!(
            err.to_string().contains("in use by another robot process"),
            "{err}"
        );
    }

    #[test]
    fn a_garbage_file_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DB_FILE),
            b"this is not a database, just some text bytes......",
        )
        .unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.path().exists());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_read_only_directory_is_a_clear_error() {
        use std::os::unix::fs::PermissionsExt;
        if unsafe { libc::geteuid() } == 0 {
            // root ignores permissions; use a path under a regular file instead.
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("file");
            std::fs::write(&file, "x").unwrap();
            let err = Store::open(&file.join("data")).unwrap_err();
            assert!(
                err.to_string().starts_with("cannot open the store at"),
                "{err}"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let err = Store::open(&ro).unwrap_err();
        assert!(err.to_string().contains("cannot open the store"), "{err}");
    }
}
