//! The rewind point of a job whose run holds live resources (`engine::resources`).
//!
//! A live resource (a database connection, a transaction) cannot survive a crash, so a resume
//! cannot continue after the node that opened it. A *span* starts when a node completes with a
//! resource open and none was open before; it ends at the first completed node after which none
//! is open. While a span is open the store keeps a second snapshot next to the latest
//! checkpoint: the checkpoint as it was just before the span's first opener ran (its rows are
//! copied under the id `<job>#rewind` in the same transaction as the opener's save, so the copy
//! costs one statement per span, nothing per node). When the span ends the copy is dropped.
//!
//! Each checkpoint's core lists the resources open at it (kind, name, opener) and the nodes
//! completed since the span began. Resuming a checkpoint that lists open resources rewinds: the
//! rewind snapshot replaces the latest checkpoint (or, when the opener was the run's first
//! node, the run starts over) and the nodes from the opener on run again, at least once, as the
//! node in flight does after any crash. If one of those nodes is `_at_most_once`, the job is
//! not resumed and fails naming it.
//!
//! The rewind point is before the *first* opener of the span, which is before or at the earliest
//! opener whose resource is still open (a resource opened and closed inside the span keeps the
//! span going). For a resource opened in a loop body and closed in the same iteration, that is
//! just before the opener in the iteration it was opened in; a resource left open across
//! iterations keeps the span open, so the rewind goes back to the iteration that opened it.

use super::checkpoint::{is_at_most_once, Checkpoint, ResumePlan};
use super::{Store, StoreError};
use crate::engine::model::Workflow;
use crate::engine::resources::OpenRecord;
use crate::engine::runner::RunError;
use rusqlite::Transaction;

/// The id under which a job's rewind snapshot is stored.
pub(crate) fn rewind_id(job_id: &str) -> String {
    format!("{job_id}{SUFFIX}")
}

/// The suffix of rewind snapshot ids (listings skip them).
pub(crate) const SUFFIX: &str = "#rewind";

/// What a save does to the rewind snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpanChange {
    /// Nothing.
    Same,
    /// A span starts: keep the checkpoint before this save as the rewind point.
    Start,
    /// The span ended: drop the rewind point.
    End,
}

/// The span as a checkpointer sees it from save to save.
#[derive(Debug, Default)]
pub(crate) struct Span {
    /// Distinct node indices completed since the span began (the first opener first).
    pub(crate) nodes: Vec<usize>,
}

impl Span {
    /// Account for the save after node `idx` with `open` resources.
    pub(crate) fn on_save(&mut self, open: &[OpenRecord], idx: Option<usize>) -> SpanChange {
        if open.is_empty() {
            if self.nodes.is_empty() {
                return SpanChange::Same;
            }
            self.nodes.clear();
            return SpanChange::End;
        }
        let change = if self.nodes.is_empty() {
            SpanChange::Start
        } else {
            SpanChange::Same
        };
        let idx = idx.or_else(|| open.first().map(|r| r.opener_idx));
        if let Some(i) = idx.filter(|i| !self.nodes.contains(i)) {
            self.nodes.push(i);
        }
        change
    }
}

/// Inside the save transaction, before the new rows: keep (`Start`) or drop (`End`) the rewind
/// snapshot. `have_previous`: a checkpoint exists to keep (else the rewind is to the start).
pub(crate) fn apply(
    tx: &Transaction<'_>,
    job_id: &str,
    change: SpanChange,
    have_previous: bool,
) -> Result<(), StoreError> {
    let rewind = rewind_id(job_id);
    match change {
        SpanChange::Same => return Ok(()),
        SpanChange::End => {}
        SpanChange::Start => {
            delete(tx, &rewind)?;
            if have_previous {
                tx.execute(
                    "INSERT INTO checkpoint_values(job_id, kind, key, value, compressed)
                     SELECT ?2, kind, key, value, compressed FROM checkpoint_values WHERE job_id = ?1",
                    [job_id, &rewind],
                )?;
                tx.execute(
                    "INSERT INTO checkpoints(job_id, workflow_hash, inputs_hash, inflight, status, created_at, finished_at)
                     SELECT ?2, workflow_hash, inputs_hash, NULL, status, created_at, finished_at
                     FROM checkpoints WHERE job_id = ?1",
                    [job_id, &rewind],
                )?;
            }
            return Ok(());
        }
    }
    delete(tx, &rewind)
}

fn delete(conn: &rusqlite::Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM checkpoint_values WHERE job_id = ?1", [id])?;
    conn.execute("DELETE FROM checkpoints WHERE job_id = ?1", [id])?;
    Ok(())
}

/// Delete the rewind snapshot of `job_id` (with its checkpoint).
pub(crate) fn clear(conn: &rusqlite::Connection, job_id: &str) -> Result<(), StoreError> {
    delete(conn, &rewind_id(job_id))
}

/// Make the rewind snapshot the job's checkpoint. `false` when there is none (rewind to start).
fn restore(store: &mut Store, job_id: &str) -> Result<bool, StoreError> {
    let rewind = rewind_id(job_id);
    let tx = store.conn.transaction()?;
    let exists = tx.query_row(
        "SELECT count(*) FROM checkpoints WHERE job_id = ?1",
        [&rewind],
        |r| r.get::<_, i64>(0),
    )? > 0;
    if exists {
        tx.execute("DELETE FROM checkpoint_values WHERE job_id = ?1", [job_id])?;
        tx.execute(
            "UPDATE checkpoint_values SET job_id = ?1 WHERE job_id = ?2",
            [job_id, &rewind],
        )?;
        tx.execute(
            "UPDATE checkpoints SET inflight = NULL WHERE job_id = ?1",
            [job_id],
        )?;
        tx.execute("DELETE FROM checkpoints WHERE job_id = ?1", [&rewind])?;
    }
    tx.commit()?;
    Ok(exists)
}

/// Resuming `cp`, which lists open resources: refuse when an `_at_most_once` node lies in the
/// rewound span, else rewind (to the kept snapshot, or to the start). `None` when nothing was
/// open (resume as usual).
pub(crate) fn plan(
    store: &mut Store,
    job_id: &str,
    wf: &Workflow,
    cp: &Checkpoint,
) -> Option<ResumePlan> {
    let first = cp.resources.first()?;
    let labels: Vec<String> = cp
        .resources
        .iter()
        .map(|r| format!("<{} {}> (opened by node {})", r.kind, r.name, r.opener))
        .collect();
    let labels = labels.join(", ");
    if let Some(&idx) = cp
        .span
        .iter()
        .find(|&&i| i < wf.nodes.len() && is_at_most_once(wf, i))
    {
        return Some(ResumePlan::Refuse(RunError {
            node_id: wf.nodes[idx].id.clone(),
            node_type: wf.nodes[idx].def.node_type.to_string(),
            error_type: "AtMostOnceError".into(),
            message: format!(
                "is marked _at_most_once and ran while {labels} was open; a live resource does not \
                 survive a restart, so resuming would run it again from node {}. Check whether its \
                 effect happened, then clear the checkpoint of job {job_id} to run the job again",
                first.opener
            ),
        }));
    }
    let why = format!("{labels} did not survive the restart");
    match restore(store, job_id) {
        Ok(true) => match store.load_checkpoint(job_id, wf) {
            Ok(Some(rewound)) => {
                log::info!(
                    "job {job_id}: {why}; rewinding to the checkpoint before node {} (after node {})",
                    first.opener,
                    rewound.node_id
                );
                Some(ResumePlan::Resume(Box::new(rewound)))
            }
            other => Some(start_over(
                store,
                job_id,
                format!(
                    "{why}, and its rewind point could not be read ({:?})",
                    other.err()
                ),
            )),
        },
        Ok(false) => Some(start_over(
            store,
            job_id,
            format!(
                "{why}; node {} opened it first, so the run starts again",
                first.opener
            ),
        )),
        Err(e) => Some(start_over(
            store,
            job_id,
            format!("{why}, and its rewind point could not be restored ({e})"),
        )),
    }
}

fn start_over(store: &mut Store, job_id: &str, reason: String) -> ResumePlan {
    if let Err(e) = store.clear_checkpoint(job_id) {
        log::warn!("cannot delete the checkpoint of job {job_id}: {e}");
    }
    ResumePlan::Fresh {
        reason: Some(reason),
    }
}

#[cfg(test)]
#[path = "rewind_tests.rs"]
mod tests;
