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
pub mod journal;
mod reserve;
pub(crate) mod rewind;

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
    /// SQLite says the database file itself is damaged (a corrupt page, not a database, a
    /// failed integrity check): the whole file is moved aside, see [`Store::replace_if_damaged`].
    Damaged(String),
    /// Another process holds the store (a running robot or `run --job-id`).
    Busy(String),
    /// Any other SQLite error.
    Sql(String),
}

impl StoreError {
    /// True when stored data is damaged (the caller should discard it and start clean).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StoreError::Corrupt(_) | StoreError::Damaged(_))
    }
    /// True when the database file itself is damaged (not one decodable record).
    pub fn is_damaged(&self) -> bool {
        matches!(self, StoreError::Damaged(_))
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
            StoreError::Damaged(m) => write!(f, "the store file is damaged: {m}"),
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
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Damaged(text),
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
    damage: Option<Damage>,
    replaced_at: Option<std::time::Instant>,
    reserve_released: bool,
    journal: Option<journal::Journal>,
    store_id: Option<String>,
}

/// The shortest time between two replacements of a damaged store file.
pub const REPLACE_AT_MOST_EVERY: Duration = Duration::from_secs(60);

/// Damage found in the store file: what SQLite said and where the damaged file went.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// What was wrong (SQLite's words or the integrity check's first findings).
    pub what: String,
    /// Where the damaged file was moved (kept for inspection); None when it could not be moved.
    pub moved_to: Option<PathBuf>,
    /// When it was found (RFC 3339).
    pub found_at: String,
}

impl Damage {
    fn found(what: String, moved_to: Option<PathBuf>) -> Damage {
        Damage {
            what,
            moved_to,
            found_at: chrono::Utc::now().to_rfc3339(),
        }
    }

    /// One line for status, heartbeats and `/health`.
    pub fn summary(&self) -> String {
        match &self.moved_to {
            Some(p) => format!(
                "the store was damaged ({}); the damaged file was moved to {} and the robot continues on a new store; jobs recorded in the damaged file are not resumed",
                self.what,
                p.display()
            ),
            None => format!("the store was damaged ({})", self.what),
        }
    }
}

/// `PRAGMA quick_check` on an open file: a damaged page (for example `btreeInitPage() returns
/// error 11`) is [`StoreError::Damaged`] before anything reads it. It reads every page once
/// (measured: 105-190 ms on an 80 MB store with a warm cache), which a start can afford.
fn quick_check(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let findings: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    if findings.len() == 1 && findings[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Damaged(format!(
        "integrity check: {}",
        findings.join("; ")
    )))
}

/// Move a damaged database (and its WAL) aside as `casare-robot.db.corrupt-<unix seconds>`,
/// saying so at error level; the shared-memory index is deleted. Returns the new name.
fn move_aside(path: &Path, why: &str) -> Result<PathBuf, StoreError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path
        .file_name()
        .map_or_else(|| DB_FILE.into(), |n| n.to_string_lossy().into_owned());
    let aside = path.with_file_name(format!("{name}.corrupt-{stamp}"));
    log::error!(
        "store {} is damaged ({why}); moved to {} and starting a new one: jobs recorded in it are not resumed",
        path.display(),
        aside.display()
    );
    std::fs::rename(path, &aside).map_err(|e| StoreError::Open {
        path: path.to_path_buf(),
        message: format!("damaged ({why}) and cannot be moved aside: {e}"),
    })?;
    let wal = path.with_file_name(format!("{name}-wal"));
    if wal.exists() {
        let _ = std::fs::rename(
            &wal,
            aside.with_file_name(format!("{name}.corrupt-{stamp}-wal")),
        );
    }
    let _ = std::fs::remove_file(path.with_file_name(format!("{name}-shm")));
    Ok(aside)
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (or create) the store in `data_dir`. A damaged database (not a database, or a
    /// failed `quick_check`) is moved aside and replaced; [`Store::damage`] then says so.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        crate::private_fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.to_path_buf(),
            message: e.to_string().to_lowercase(),
        })?;
        let path = data_dir.join(DB_FILE);
        let mut store = match Store::open_file(&path) {
            Ok(store) => store,
            Err(StoreError::Damaged(why)) => {
                let moved_to = move_aside(&path, &why)?;
                let mut store = Store::open_file(&path)?;
                store.damage = Some(Damage::found(why, Some(moved_to)));
                store
            }
            Err(e) => return Err(e),
        };
        store.attach_journal_logged(data_dir);
        Ok(store)
    }

    /// Damage found in the store file while this process runs (the file was moved aside and
    /// the robot continues on a fresh one): reported in status, heartbeats and `/health`.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    /// After a failed operation: when `err` says the database file is damaged (SQLite found a
    /// corrupt page at run time), close it, move it aside and continue on a fresh file (or in
    /// memory when no fresh file can be created). True when the store was replaced. A file is
    /// replaced at most once per [`REPLACE_AT_MOST_EVERY`], so a disk that damages every file
    /// cannot make the robot spin.
    pub fn replace_if_damaged(&mut self, err: &StoreError) -> bool {
        let StoreError::Damaged(why) = err else {
            return false;
        };
        if !self.is_durable()
            || self
                .replaced_at
                .is_some_and(|t| t.elapsed() < REPLACE_AT_MOST_EVERY)
        {
            return false;
        }
        let Ok(placeholder) = Connection::open_in_memory() else {
            return false;
        };
        // Close the damaged file before moving it (Windows cannot rename an open file).
        drop(std::mem::replace(&mut self.conn, placeholder));
        self.replaced_at = Some(std::time::Instant::now());
        let path = self.path.clone();
        let moved_to = match move_aside(&path, why) {
            Ok(aside) => Some(aside),
            Err(e) => {
                log::error!("{e}");
                None
            }
        };
        let reopened = moved_to.as_ref().map(|_| Store::open_file(&path));
        // Set before the journal is attached: it adds what it restored.
        self.damage = Some(Damage::found(why.clone(), moved_to));
        match reopened {
            Some(Ok(fresh)) => {
                self.conn = fresh.conn;
                self.journal = None;
                if let Some(dir) = path.parent() {
                    self.attach_journal_logged(dir);
                }
            }
            other => {
                if let Some(Err(e)) = other {
                    log::error!("cannot create a new store after the damage ({e})");
                }
                log::error!(
                    "the robot runs WITHOUT durability until it is restarted with a usable data_dir"
                );
                self.path = PathBuf::from(":memory:");
                let _ = self.conn.execute_batch("PRAGMA foreign_keys=ON;");
                if let Err(e) = self.migrate() {
                    log::error!("cannot set up the in-memory store: {e}");
                }
            }
        }
        true
    }

    fn attach_journal_logged(&mut self, data_dir: &Path) {
        if let Err(e) = self.attach_journal(data_dir) {
            log::error!(
                "store {}: cannot check it against its job journal ({e}); a reset of the store may go unnoticed",
                self.path.display()
            );
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
        quick_check(&conn)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            counters: jobs::StoreCounters::default(),
            damage: None,
            replaced_at: None,
            reserve_released: false,
            journal: None,
            store_id: None,
        };
        store.migrate()?;
        if let Err(e) = store.refill_settle_reserve() {
            log::warn!(
                "store {}: cannot set aside the space that recording a job's end on a full disk needs ({e})",
                path.display()
            );
        }
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
            damage: None,
            replaced_at: None,
            reserve_released: false,
            journal: None,
            store_id: None,
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
        self.conn.execute_batch(reserve::SCHEMA)?;
        jobs::add_settle_seq(&self.conn)?;
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
pub(crate) mod tests {
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

    /// Forbid the database file to grow by a single page: what a full disk looks like to SQLite.
    pub(crate) fn forbid_growth(store: &Store) {
        let pages: i64 = store
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        store
            .conn
            .execute_batch(&format!("PRAGMA max_page_count = {pages}"))
            .unwrap();
    }

    /// Record WebSocket job `job_id` with an empty workflow (for the store's tests).
    pub(crate) fn record(store: &mut Store, job_id: &str) -> jobs::Recorded {
        let vars = serde_json::Map::new();
        store
            .record_job(&jobs::NewJob {
                job_id,
                route: jobs::Route::Ws,
                workflow: r#"{"nodes": {}}"#,
                variables: &vars,
                timeout: None,
                attempt: 0,
                lease_expires_at: None,
            })
            .unwrap()
    }

    /// Breaks the b-tree page header of `table`'s root page in the (closed) database file:
    /// SQLite then says `btreeInitPage() returns error 11` for that page.
    pub(crate) fn damage_root_page(db: &Path, table: &str) {
        let conn = Connection::open(db).unwrap();
        let root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        drop(conn);
        let mut bytes = std::fs::read(db).unwrap();
        let at = ((root - 1) * page_size) as usize + if root == 1 { 100 } else { 0 };
        bytes[at] = 0x00;
        std::fs::write(db, bytes).unwrap();
        let check = Connection::open(db).unwrap();
        let finding: String = check
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert!(
            finding.contains("btreeInitPage() returns error"),
            "{finding}"
        );
    }

    fn corrupt_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".corrupt-") && !n.ends_with("-wal"))
            .collect()
    }

    #[test]
    fn a_damaged_page_is_found_at_open_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        record(&mut store, "held");
        assert!(store.start_job("held", 1).unwrap().is_some());
        drop(store);
        damage_root_page(&dir.path().join(DB_FILE), "jobs");
        let mut store = Store::open(dir.path()).unwrap();
        let damage = store.damage().expect("the damage is reported").clone();
        assert!(
            damage.what.contains("integrity check") || damage.what.contains("malformed"),
            "{damage:?}"
        );
        assert!(
            damage.summary().contains("moved to"),
            "{}",
            damage.summary()
        );
        assert_eq!(corrupt_files(dir.path()).len(), 1);
        // The new store works.
        assert!(store.unsettled_jobs().unwrap().is_empty());
        record(&mut store, "next");
        assert!(store.job("next").unwrap().is_some());
        // A clean reopen reports nothing.
        drop(store);
        assert!(Store::open(dir.path()).unwrap().damage().is_none());
    }

    #[test]
    fn a_damaged_page_found_at_run_time_replaces_the_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        for i in 0..50 {
            record(&mut store, &format!("job-{i}"));
        }
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        assert!(store.damage().is_none());
        // Damage the file under the open store and drop its page cache.
        let db = dir.path().join(DB_FILE);
        let root: i64 = store
            .conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'jobs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let mut bytes = std::fs::read(&db).unwrap();
        bytes[((root - 1) * 4096) as usize] = 0x00;
        std::fs::write(&db, bytes).unwrap();
        store.conn.execute_batch("PRAGMA shrink_memory").unwrap();
        let err = store.job("job-7").unwrap_err();
        assert!(err.is_damaged(), "{err:?}");
        assert!(store.replace_if_damaged(&err));
        assert!(store.is_durable());
        assert!(store.damage().is_some());
        assert_eq!(corrupt_files(dir.path()).len(), 1);
        // A fresh file, where the journal recorded the lost jobs again, settled as failed.
        let rec = store
            .job("job-7")
            .unwrap()
            .expect("restored from the journal");
        assert!(
            matches!(&rec.report, Some(jobs::Report::Failed { error_type, .. }) if error_type == "StoreLost"),
            "{rec:?}"
        );
        assert!(store.unsettled_jobs().unwrap().is_empty());
        let what = &store.damage().unwrap().what;
        assert!(what.contains("recorded again from the journal"), "{what}");
        record(&mut store, "after");
        // A second damage within the minute is not replaced again (no spinning).
        assert!(!store.replace_if_damaged(&StoreError::Damaged("again".into())));
        // A decoding problem of one record is not file damage.
        assert!(!store.replace_if_damaged(&StoreError::Corrupt("one row".into())));
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
