//! The settle reserve: space set aside so that the end of a job can be recorded on a full disk.
//!
//! A job that ran to its end must be settled (its report, state and outbox entries in one FULL
//! transaction); if that fails the record stays `running` and the next start runs the job again.
//! So the store keeps one row of [`RESERVE_BYTES`] zeros (`settle_reserve`). When a settle
//! fails because the disk is full, the row is deleted (its pages go to SQLite's freelist, so
//! the file does not need to grow) and the settle is tried again in the space it freed. The
//! reserve is refilled at the next open and after the next settle once space is back. Only
//! settles use it: recording new jobs on a full disk still fails (the job is rejected or given
//! back), so the reserve is there when the running jobs end.
//!
//! Limits: on a real disk the WAL needs room too; it normally has it (the WAL file keeps its
//! size after a checkpoint, up to `journal_size_limit`), but a WAL just truncated can still
//! fail. A report larger than the reserve is recorded with its result dropped
//! ([`Report::trimmed_for_full_disk`](super::jobs::Report::trimmed_for_full_disk)).

use super::{Store, StoreError};
use rusqlite::Transaction;

pub(crate) const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS settle_reserve(id INTEGER PRIMARY KEY, pad BLOB NOT NULL);";

/// Bytes kept in reserve for settles (64 pages of 4 KiB).
pub const RESERVE_BYTES: i64 = 256 * 1024;

impl Store {
    /// Put the reserve back if it was used (or never made). True when it was written.
    pub(crate) fn refill_settle_reserve(&mut self) -> Result<bool, StoreError> {
        if !self.is_durable() {
            return Ok(false);
        }
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM settle_reserve", [], |r| r.get(0))?;
        if n > 0 {
            self.reserve_released = false;
            return Ok(false);
        }
        self.conn.execute(
            "INSERT INTO settle_reserve(id, pad) VALUES(1, zeroblob(?1))",
            [RESERVE_BYTES],
        )?;
        self.reserve_released = false;
        Ok(true)
    }

    /// A settle transaction (FULL) that may use the reserve: on a full disk the reserve is
    /// released and `f` runs once more.
    pub(crate) fn settle_tx<T>(
        &mut self,
        f: impl Fn(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let value = match self.durable_tx(&f) {
            Err(e) if e.is_full() => {
                let released = self.conn.execute("DELETE FROM settle_reserve", []);
                if !matches!(released, Ok(1..)) {
                    return Err(e);
                }
                self.reserve_released = true;
                log::error!(
                    "the disk is full: the settle reserve ({} KiB) is used to record the end of a job; free disk space (new jobs cannot be recorded)",
                    RESERVE_BYTES / 1024
                );
                self.durable_tx(&f)?
            }
            other => other?,
        };
        if self.reserve_released {
            if let Ok(true) = self.refill_settle_reserve() {
                log::info!("the settle reserve is back (disk space was freed)");
            }
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::jobs::{Finish, JobState, Report, Route};
    use crate::store::tests::record;
    use crate::store::Store;
    use serde_json::json;

    /// A store that cannot grow by a single page (what a full disk looks like to SQLite), with
    /// job `j` recorded and started.
    fn full_store(dir: &std::path::Path) -> (Store, u64) {
        let mut store = Store::open(dir).unwrap();
        record(&mut store, "j");
        let token = store.start_job("j", 1).unwrap().unwrap();
        crate::store::tests::forbid_growth(&store);
        (store, token)
    }

    fn incompressible(n: usize) -> String {
        let mut rng = fastrand::Rng::with_seed(11);
        (0..n).map(|_| rng.alphanumeric()).collect()
    }

    #[test]
    fn the_end_of_a_job_is_recorded_on_a_full_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, token) = full_store(dir.path());
        let report = Report::Complete {
            result: json!({"success": true, "variables": {"text": incompressible(60_000)}}),
            duration_ms: 3,
        };
        // Without the reserve this report does not fit.
        let finish = store.finish_job("j", token, &report).unwrap();
        assert_eq!(
            finish,
            Finish::Reported(report, crate::store::jobs::Routes::of(Route::Ws))
        );
        drop(store);
        // After a restart the job is settled, not resumed (it never runs twice).
        let mut store = Store::open(dir.path()).unwrap();
        assert!(store.unsettled_jobs().unwrap().is_empty());
        assert_eq!(store.job("j").unwrap().unwrap().state, JobState::Finished);
        assert_eq!(
            store.outbox_len(None).unwrap(),
            1,
            "its result waits to be sent"
        );
        // The reserve was refilled at the open.
        let n: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM settle_reserve", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_report_larger_than_the_reserve_is_recorded_without_its_result() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, token) = full_store(dir.path());
        let report = Report::Complete {
            result: json!({"success": true, "variables": {"text": incompressible(2_000_000)}}),
            duration_ms: 3,
        };
        let Finish::Reported(recorded, _) = store.finish_job("j", token, &report).unwrap() else {
            panic!("not settled")
        };
        let Report::Complete { result, .. } = &recorded else {
            panic!("{recorded:?}")
        };
        assert_eq!(result["success"], true);
        assert!(
            result["result_dropped"]
                .as_str()
                .unwrap()
                .contains("disk was full"),
            "{result}"
        );
        assert!(store.unsettled_jobs().unwrap().is_empty());
    }
}
