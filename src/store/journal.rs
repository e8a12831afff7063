//! The job journal: a small append-only sidecar file (`casare-robot.journal`, JSON lines) that
//! makes a reset or rolled-back store detectable and keeps the robot from running a job again
//! that the lost store had settled.
//!
//! Every job event the orchestrator can rely on is numbered in the database (`meta.journal_seq`,
//! incremented in the event's own transaction) and, once committed, appended to the journal
//! with the store's identity (`meta.store_id`, random, made with the store): `accepted` (a job
//! recorded before it is acknowledged) and its settlement (`completed`, `failed`, `cancelled`).
//! These lines get no fsync of their own: the event is already durable in the database (a FULL
//! commit), so after a power cut the database is never behind the journal, and the journal only
//! has to outlive a later loss of the database, by which time the system has written it out. Only
//! a power cut that also destroys the database within the OS's write-back delay (seconds) can
//! lose the newest lines. An `unrecorded` end (the settle itself failed, see below) is the only
//! record of that end and is synced. A `store` line marks the journal as belonging to a store.
//!
//! At open, the journal is compared with the database:
//! - same store, `journal_seq` at least the journal's last number: all is well;
//! - same store, a lower number: the database lost its newest commits (garbage in its WAL);
//! - no or another store id while the journal has events: the database was emptied, truncated
//!   or replaced (or moved aside as damaged).
//!
//! Either way this is reported as damage ([`Store::damage`]) and every job the database no longer
//! knows is recorded again from the journal, settled: a job that had *completed* is answered as
//! completed with a `result_lost` note when it is assigned again (its result is gone, but it is
//! never run twice); one that had failed or was cancelled is answered with that; one that was
//! accepted but not settled (it was waiting or running) is settled as failed (`StoreLost`) and
//! that failure is queued for the orchestrator, so no job vanishes silently. A REST job whose
//! report is a failure can still run again as a new attempt of the orchestrator.
//!
//! The journal is compacted at open once it passes [`COMPACT_BYTES`], and by a running robot
//! each time it appended that much (the last event of the newest [`COMPACT_KEEP_JOBS`] jobs are
//! kept). To start a robot over with an empty store, delete the database and the journal
//! together.

use super::jobs::{Report, Routes};
use super::{Damage, Store, StoreError};
use indexmap::IndexMap;
use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the journal inside the data directory.
pub const JOURNAL_FILE: &str = "casare-robot.journal";

/// The journal is compacted at open when it is larger than this, and by a running robot each
/// time it appended this much.
pub const COMPACT_BYTES: u64 = 4 << 20;

/// Jobs whose last event a compaction keeps.
pub const COMPACT_KEEP_JOBS: usize = 20_000;

/// What happened to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Event {
    /// The journal belongs to the store named in the line.
    Store,
    /// The job was recorded (it is acknowledged next).
    Accepted,
    /// It completed.
    Completed,
    /// It failed.
    Failed,
    /// It was cancelled (or its lease was lost).
    Cancelled,
    /// Its record was deleted on purpose (a REST job given back, `checkpoints clear`): the same
    /// id is a new job again.
    Forgotten,
}

impl Event {
    /// The settlement event of `report` (None: a lost lease, reported to nobody).
    pub(crate) fn of_settle(report: Option<&Report>) -> Event {
        match report {
            Some(Report::Complete { .. }) => Event::Completed,
            Some(Report::Failed { .. }) => Event::Failed,
            _ => Event::Cancelled,
        }
    }
}

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    seq: i64,
    store: String,
    event: Event,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    job: String,
    #[serde(default)]
    routes: i64,
    #[serde(default)]
    attempt: u32,
    /// A job that ran to its end when its settlement could not be committed (a full disk): the
    /// next open settles it from this line.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unrecorded: bool,
}

/// The open journal of a durable store.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: Option<std::fs::File>,
    warned: bool,
    /// Bytes appended by this process (a long-running robot compacts when they add up).
    appended: u64,
}

impl Journal {
    fn new(data_dir: &Path) -> Journal {
        Journal {
            path: data_dir.join(JOURNAL_FILE),
            file: None,
            warned: false,
            appended: 0,
        }
    }

    /// Every readable line (a torn last line or a damaged one is skipped).
    fn read(&self) -> Vec<Entry> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
            .collect()
    }

    fn append(&mut self, entry: &Entry, sync: bool) {
        let result = (|| -> std::io::Result<()> {
            if self.file.is_none() {
                self.file = Some(crate::private_fs::open_append(&self.path)?);
            }
            let file = self.file.as_mut().expect("just opened");
            let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
            line.push(b'\n');
            file.write_all(&line)?;
            self.appended += line.len() as u64;
            if sync {
                file.sync_data()?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.file = None;
            if !std::mem::replace(&mut self.warned, true) {
                log::warn!(
                    "cannot write the job journal {} ({e}): a reset of the store could go unnoticed (said once)",
                    self.path.display()
                );
            }
        }
    }

    /// Rewrite the journal with the last event of the newest jobs (temp file + rename).
    fn compact(&mut self, entries: &[Entry], store_id: &str, seq: i64) -> std::io::Result<()> {
        let mut last: IndexMap<&str, &Entry> = IndexMap::new();
        for e in entries.iter().filter(|e| e.event != Event::Store) {
            last.shift_remove(e.job.as_str());
            last.insert(&e.job, e);
        }
        let skip = last.len().saturating_sub(COMPACT_KEEP_JOBS);
        let tmp = self.path.with_extension("journal.tmp");
        let mut text = Vec::new();
        for e in last.values().skip(skip) {
            serde_json::to_writer(&mut text, e).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        serde_json::to_writer(&mut text, &marker(store_id, seq)).map_err(std::io::Error::other)?;
        text.push(b'\n');
        let mut f = crate::private_fs::open_options()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)?;
        crate::private_fs::restrict(&f)?;
        f.write_all(&text)?;
        f.sync_all()?;
        drop(f);
        self.file = None;
        std::fs::rename(&tmp, &self.path)
    }
}

fn marker(store_id: &str, seq: i64) -> Entry {
    Entry {
        seq,
        store: store_id.to_string(),
        event: Event::Store,
        job: String::new(),
        routes: 0,
        attempt: 0,
        unrecorded: false,
    }
}

/// Number the next job event inside its transaction; returns its number.
pub(crate) fn bump(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES('journal_seq', '1')
         ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        [],
    )?;
    let seq: String = tx.query_row(
        "SELECT value FROM meta WHERE key = 'journal_seq'",
        [],
        |r| r.get(0),
    )?;
    Ok(seq.parse().unwrap_or(0))
}

fn new_store_id() -> String {
    let mut rng = fastrand::Rng::new();
    format!("{:016x}{:016x}", rng.u64(..), rng.u64(..))
}

impl Store {
    /// Append the committed event `seq` of `job_id` to the journal (no fsync: the database holds
    /// the event durably; see the module doc).
    pub(crate) fn journal_note(
        &mut self,
        job_id: &str,
        event: Event,
        routes: Routes,
        attempt: u32,
    ) {
        let (Some(store_id), Some(seq)) = (self.store_id.clone(), self.journal_seq()) else {
            return;
        };
        if let Some(journal) = self.journal.as_mut() {
            let entry = Entry {
                seq,
                store: store_id,
                event,
                job: job_id.to_string(),
                routes: routes.bits(),
                attempt,
                unrecorded: false,
            };
            journal.append(&entry, false);
            if journal.appended > COMPACT_BYTES {
                journal.appended = 0;
                let entries = journal.read();
                if let Err(e) = journal.compact(&entries, &entry.store, seq) {
                    log::warn!(
                        "cannot compact the job journal {}: {e}",
                        journal.path.display()
                    );
                }
            }
        }
    }

    /// The end of a run of `job_id` could not be committed (the disk is full even for the
    /// settle reserve): note it in the journal (synced), so the next open settles the job
    /// instead of running it again. Best effort: a disk with no room for one line loses it.
    pub fn journal_unrecorded_end(&mut self, job_id: &str, report: &Report) {
        let (Some(store_id), Some(journal)) = (self.store_id.clone(), self.journal.as_mut()) else {
            return;
        };
        let entry = Entry {
            seq: 0,
            store: store_id,
            event: Event::of_settle(Some(report)),
            job: job_id.to_string(),
            routes: 0,
            attempt: 0,
            unrecorded: true,
        };
        journal.append(&entry, true);
        log::error!(
            "job {job_id}: its end is noted in the job journal; the next start records it (the job is not run again)"
        );
    }

    fn journal_seq(&self) -> Option<i64> {
        self.meta_get("journal_seq")
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
    }

    /// Attach the journal in `data_dir` and compare it with the database (see the module
    /// docs): a reset or rolled-back database is reported as damage and the jobs it lost are
    /// recorded again, settled.
    pub(crate) fn attach_journal(&mut self, data_dir: &Path) -> Result<(), StoreError> {
        let mut journal = Journal::new(data_dir);
        let entries = journal.read();
        let db_id = self.meta_get("store_id")?;
        let db_seq = self.journal_seq().unwrap_or(0);
        let journal_seq = entries.iter().map(|e| e.seq).max().unwrap_or(0);
        let journal_id = entries.last().map(|e| e.store.clone());
        let has_events = entries.iter().any(|e| e.event != Event::Store);
        let lost_from = match (&db_id, &journal_id) {
            (Some(db), Some(j)) if db == j => (db_seq < journal_seq).then_some(db_seq),
            _ if has_events => Some(i64::MIN),
            _ => None,
        };
        let store_id = db_id.clone().unwrap_or_else(new_store_id);
        // First the identity and the number to continue from (after what the journal holds).
        if db_id.as_deref() != Some(store_id.as_str()) || db_seq < journal_seq {
            // NORMAL durability: the next FULL commit (a job recorded) makes it durable first.
            let tx = self.conn.transaction()?;
            {
                tx.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('store_id', ?1)",
                    [&store_id],
                )?;
                tx.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('journal_seq', ?1)",
                    [journal_seq.max(db_seq).to_string()],
                )?;
            }
            tx.commit()?;
        }
        if let Some(from) = lost_from {
            let lost: Vec<&Entry> = entries
                .iter()
                .filter(|e| e.event != Event::Store && e.seq > from)
                .collect();
            let restored = self.durable_tx(|tx| restore(tx, &lost, LOST_WITH_STORE))?;
            let restored = restored.len();
            let what = if from == i64::MIN {
                format!(
                    "the database holds none of the job events its journal {} records (it was emptied, truncated, replaced or moved aside)",
                    journal.path.display()
                )
            } else {
                format!(
                    "the database lost its newest {} of the job events its journal {} records (its WAL was damaged or lost)",
                    lost.len(),
                    journal.path.display()
                )
            };
            let what = format!(
                "{what}; {restored} job(s) it no longer knew were recorded again from the journal as settled (a completed one is answered with its result lost, never run again; one that was waiting or running is reported failed)"
            );
            log::error!("store {}: {what}", self.path.display());
            self.damage = Some(match self.damage.take() {
                Some(mut d) => {
                    d.what = format!("{}; {what}", d.what);
                    d
                }
                None => Damage::found(what, None),
            });
        }
        // Ends that a full disk kept from being recorded: settle them now (settled ones are
        // skipped, so a line already applied changes nothing). Only a job's last line counts:
        // a later one (forgotten, accepted again for a new attempt) is a newer run of that id,
        // which the old end must not settle.
        let mut last_line: std::collections::HashMap<&str, usize> = Default::default();
        for (i, e) in entries.iter().enumerate() {
            if e.event != Event::Store {
                last_line.insert(e.job.as_str(), i);
            }
        }
        let mut unrecorded: Vec<&Entry> = Vec::new();
        for (_, e) in entries
            .iter()
            .enumerate()
            .filter(|(i, e)| e.unrecorded && last_line.get(e.job.as_str()) == Some(i))
        {
            let unsettled = self
                .job(&e.job)
                .ok()
                .flatten()
                .is_some_and(|r| !r.state.is_settled());
            if unsettled && !matches!(e.event, Event::Store | Event::Accepted) {
                unrecorded.push(e);
            }
        }
        if !unrecorded.is_empty() {
            let restored = self.durable_tx(|tx| restore(tx, &unrecorded, LOST_TO_FULL_DISK))?;
            let n = restored.len();
            if n > 0 {
                log::error!(
                    "store {}: {n} job(s) that ran to their end while the disk was full are recorded now from the job journal (not run again; their results are lost)",
                    self.path.display()
                );
            }
        }
        self.store_id = Some(store_id.clone());
        let seq = self.journal_seq().unwrap_or(0);
        let size = std::fs::metadata(&journal.path).map_or(0, |m| m.len());
        if size > COMPACT_BYTES {
            if let Err(e) = journal.compact(&entries, &store_id, seq) {
                log::warn!(
                    "cannot compact the job journal {}: {e}",
                    journal.path.display()
                );
            }
        } else if journal_id.as_deref() != Some(store_id.as_str()) || lost_from.is_some() {
            journal.append(&marker(&store_id, seq), true);
        }
        self.journal = Some(journal);
        Ok(())
    }
}

/// Why a job's report was lost, for the reports [`restore`] writes.
const LOST_WITH_STORE: &str = "was lost with a damaged or reset store";
const LOST_TO_FULL_DISK: &str = "could not be stored: the robot's disk was full when it ended";

/// Record again, settled, every job of `lost` the database does not know as settled; `why`
/// ends the sentence saying where its report went. Returns the jobs written. Nothing is
/// journaled: a later reset restores them the same way, and a failure queued for the
/// orchestrator here is queued again then (it may not have been delivered; a second one is
/// harmless).
fn restore(tx: &Transaction<'_>, lost: &[&Entry], why: &str) -> Result<Vec<String>, StoreError> {
    let mut last: IndexMap<&str, (Event, i64, u32)> = IndexMap::new();
    for e in lost {
        let slot = last.entry(e.job.as_str()).or_insert((e.event, 0, 0));
        *slot = (e.event, slot.1 | e.routes, slot.2.max(e.attempt));
    }
    let mut written = Vec::new();
    for (job_id, (event, routes, attempt)) in last {
        if event == Event::Forgotten {
            continue;
        }
        let state: Option<String> = tx
            .query_row("SELECT state FROM jobs WHERE job_id = ?1", [job_id], |r| {
                r.get(0)
            })
            .optional()?;
        match state.as_deref() {
            Some("finished" | "cancelled") => continue,
            Some(_) if event == Event::Accepted => continue,
            Some(_) => {}
            None => {
                tx.execute(
                    "INSERT INTO jobs(job_id, routes, workflow, variables, state, received_at, attempt)
                     VALUES(?1, ?2, x'', '{}', 'received', ?3, ?4)",
                    params![job_id, routes, super::now_secs(), attempt],
                )?;
            }
        }
        let (state, report, report_to) = match event {
            Event::Accepted => (
                super::jobs::JobState::Finished,
                Report::Failed {
                    error: "the robot's store was lost (damaged or reset) while this job waited or ran; it is not resumed, and what it did before is unknown".into(),
                    error_type: "StoreLost".into(),
                    failed_node: None,
                    duration_ms: 0,
                },
                Routes::from_bits(routes),
            ),
            Event::Completed => (
                super::jobs::JobState::Finished,
                Report::Complete {
                    result: {
                        let note = format!(
                            "the job completed on this robot, but its result {why}; it is not run again"
                        );
                        // In `outputs` too: that is what both links send of a result.
                        serde_json::json!({
                            "success": true,
                            "status": "completed",
                            "result_lost": note,
                            "outputs": {"_result_lost": note},
                        })
                    },
                    duration_ms: 0,
                },
                Routes::default(),
            ),
            Event::Failed => (
                super::jobs::JobState::Finished,
                Report::Failed {
                    error: format!("the job failed on this robot; its report {why}"),
                    error_type: "StoreLost".into(),
                    failed_node: None,
                    duration_ms: 0,
                },
                Routes::default(),
            ),
            Event::Cancelled | Event::Store | Event::Forgotten => (
                super::jobs::JobState::Cancelled,
                Report::Cancelled,
                Routes::default(),
            ),
        };
        super::jobs::settle_in(tx, job_id, None, state, Some(&report), report_to)?;
        written.push(job_id.to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::jobs::{JobState, Recorded, Route};
    use crate::store::tests::record;
    use crate::store::DB_FILE;

    fn complete(store: &mut Store, job_id: &str) {
        record(store, job_id);
        let token = store.start_job(job_id, 1).unwrap().unwrap();
        let report = Report::Complete {
            result: serde_json::json!({"success": true}),
            duration_ms: 1,
        };
        store.finish_job(job_id, token, &report).unwrap();
    }

    #[test]
    fn a_reopened_store_is_not_mistaken_for_a_reset_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        complete(&mut store, "a");
        record(&mut store, "b");
        drop(store);
        for _ in 0..2 {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.damage().is_none(), "{:?}", store.damage());
        }
    }

    #[test]
    fn a_deleted_database_is_detected_and_its_jobs_are_known_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        complete(&mut store, "done");
        record(&mut store, "waiting");
        drop(store);
        std::fs::remove_file(dir.path().join(DB_FILE)).unwrap();

        let mut store = Store::open(dir.path()).unwrap();
        let what = store.damage().expect("detected").what.clone();
        assert!(what.contains("holds none of the job events"), "{what}");
        // The completed job is known: assigned again, it is answered, not run.
        let Recorded::Known(rec) = record(&mut store, "done") else {
            panic!("not known")
        };
        assert_eq!(rec.state, JobState::Finished);
        let Some(Report::Complete { result, .. }) = &rec.report else {
            panic!("{rec:?}")
        };
        assert!(result["outputs"]["_result_lost"].is_string(), "{result}");
        // The waiting one is settled failed and that failure is queued for the orchestrator.
        let rec = store.job("waiting").unwrap().unwrap();
        assert!(
            matches!(&rec.report, Some(Report::Failed { error_type, .. }) if error_type == "StoreLost")
        );
        assert_eq!(store.outbox_len(Some(Route::Ws)).unwrap(), 1);
        // A forgotten job (given back) is not brought back by a reset.
        record(&mut store, "given-back");
        assert!(store.forget_job("given-back").unwrap());
        drop(store);
        std::fs::remove_file(dir.path().join(DB_FILE)).unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert!(store.damage().is_some());
        assert_eq!(store.job("given-back").unwrap(), None);
        assert!(matches!(record(&mut store, "done"), Recorded::Known(_)));
        // The job that was waiting is known as failed, and its failure (lost with the outbox
        // of the second database) is queued again.
        let rec = store.job("waiting").unwrap().unwrap();
        assert!(matches!(rec.report, Some(Report::Failed { .. })), "{rec:?}");
        assert_eq!(store.outbox_len(None).unwrap(), 1);
        drop(store);
        // Said once: the next open is clean.
        assert!(Store::open(dir.path()).unwrap().damage().is_none());
    }

    #[test]
    fn an_end_the_full_disk_kept_from_the_database_is_recorded_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        record(&mut store, "ran");
        store.start_job("ran", 1).unwrap().unwrap();
        let report = Report::Complete {
            result: serde_json::json!({"success": true}),
            duration_ms: 1,
        };
        // What the worker does when even the settle reserve did not help.
        store.journal_unrecorded_end("ran", &report);
        drop(store);
        for _ in 0..2 {
            let mut store = Store::open(dir.path()).unwrap();
            assert!(store.damage().is_none(), "{:?}", store.damage());
            assert!(store.unsettled_jobs().unwrap().is_empty(), "not run again");
            let rec = store.job("ran").unwrap().unwrap();
            let Some(Report::Complete { result, .. }) = &rec.report else {
                panic!("{rec:?}")
            };
            let note = result["outputs"]["_result_lost"].as_str().unwrap();
            assert!(note.contains("disk was full"), "{note}");
        }
    }

    #[test]
    fn an_unrecorded_end_does_not_settle_a_later_run_of_the_same_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        record(&mut store, "ran");
        store.start_job("ran", 1).unwrap().unwrap();
        let report = Report::Failed {
            error: "boom".into(),
            error_type: "Error".into(),
            failed_node: None,
            duration_ms: 1,
        };
        store.journal_unrecorded_end("ran", &report);
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.job("ran").unwrap().unwrap().state, JobState::Finished);
        // The id runs again (`checkpoints clear`, then the same id), and that run is
        // interrupted: it must resume, not be settled by the old line.
        assert!(store.forget_job("ran").unwrap());
        record(&mut store, "ran");
        store.start_job("ran", 2).unwrap().unwrap();
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        let rec = store.job("ran").unwrap().unwrap();
        assert_eq!(rec.state, JobState::Running, "{rec:?}");
        assert_eq!(store.unsettled_jobs().unwrap().len(), 1);
    }

    #[test]
    fn a_running_robot_compacts_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        for i in 0..20 {
            complete(&mut store, &format!("job-{i}"));
        }
        let path = dir.path().join(JOURNAL_FILE);
        let before = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            before.matches("\"job-3\"").count(),
            2,
            "accepted and completed"
        );
        store.journal.as_mut().unwrap().appended = COMPACT_BYTES;
        complete(&mut store, "last");
        let after = std::fs::read_to_string(&path).unwrap();
        assert_eq!(after.matches("\"job-3\"").count(), 1, "{after}");
        assert!(after.len() < before.len(), "{after}");
        // Still appendable, and the store reopens clean.
        complete(&mut store, "after");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.damage().is_none(), "{:?}", store.damage());
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_a_large_journal_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        complete(&mut store, "kept");
        drop(store);
        let path = dir.path().join(JOURNAL_FILE);
        let mut text = std::fs::read_to_string(&path).unwrap();
        let store_id = serde_json::from_str::<Entry>(text.lines().last().unwrap())
            .unwrap()
            .store;
        // Many old events of one store id at low numbers (already in the database), then a
        // torn line.
        let line = serde_json::to_string(&Entry {
            seq: 1,
            store: store_id,
            event: Event::Cancelled,
            job: "old".into(),
            routes: 1,
            attempt: 0,
            unrecorded: false,
        })
        .unwrap();
        let mut old = String::new();
        while old.len() as u64 <= COMPACT_BYTES {
            old.push_str(&line);
            old.push('\n');
        }
        text.insert_str(0, &old);
        text.push_str("{\"seq\": 99, \"sto");
        std::fs::write(&path, text).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.damage().is_none(), "{:?}", store.damage());
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 4096, "compacted to {size} bytes");
        let kept = std::fs::read_to_string(&path).unwrap();
        assert!(
            kept.contains("\"kept\"") && kept.contains("\"old\""),
            "{kept}"
        );
    }
}
