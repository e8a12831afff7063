//! Read-only inspection of the store while a daemon owns it: `checkpoints list` and `show` ask
//! the running robot instead of opening the database.
//!
//! The daemon holds its SQLite file with an exclusive lock for its whole life (one writer, and
//! six `fcntl` calls saved per commit, the largest cost of a per-node checkpoint); a second
//! process cannot even read it. Rather than give that up, an inspector drops a request file in
//! `<data_dir>/inspect/` and the agent answers it from its own connection on its next status
//! tick (at most a second): the answer is written next to the request (temp file + rename), the
//! inspector reads it and removes both. The files live in the data directory, so they are as
//! private as the database itself; nothing is served over the network.

use crate::store::checkpoint::{self, CheckpointInfo};
use crate::store::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directory of requests and answers inside the data directory.
pub const INSPECT_DIR: &str = "inspect";
/// Answers nobody collected are removed after this long.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// What an inspector asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Every stored checkpoint (the rows of `checkpoints list --json`).
    List,
    /// One checkpoint, described (`checkpoints show`); `null` when there is none.
    Show(String),
}

impl Query {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Query::List => serde_json::json!({"query": "list"}),
            Query::Show(job_id) => serde_json::json!({"query": "show", "job_id": job_id}),
        }
    }

    fn from_json(v: &serde_json::Value) -> Option<Query> {
        match v["query"].as_str()? {
            "list" => Some(Query::List),
            "show" => Some(Query::Show(v["job_id"].as_str()?.to_string())),
            _ => None,
        }
    }
}

/// One row of `checkpoints list --json`.
pub fn list_row(c: &CheckpointInfo) -> serde_json::Value {
    serde_json::json!({"job_id": c.job_id, "status": format!("{:?}", c.status).to_lowercase(),
        "seq": c.seq, "last_completed_node": c.node_id, "saved_at": c.saved_at,
        "bytes": c.bytes, "workflow_hash": c.workflow_hash})
}

/// Answer `query` from `store`: `{"ok": value}` or `{"error": text}`.
pub fn answer(store: &Store, query: &Query) -> serde_json::Value {
    let result = match query {
        Query::List => store
            .list_checkpoints()
            .map(|list| serde_json::Value::Array(list.iter().map(list_row).collect())),
        Query::Show(job_id) => checkpoint::describe(store, job_id).and_then(|v| match v {
            Some(v) => Ok(v),
            None => recorded_report(store, job_id),
        }),
    };
    match result {
        Ok(value) => serde_json::json!({ "ok": value }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}

/// A finished job has no checkpoint; its record keeps the full report (a result sent truncated
/// to fit the frame limit says to look here). Null when the job is unknown or has no report.
fn recorded_report(store: &Store, job_id: &str) -> Result<serde_json::Value, StoreError> {
    Ok(match store.job(job_id)? {
        Some(rec) if rec.report.is_some() => serde_json::json!({
            "job_id": rec.job_id,
            "state": rec.state.as_str(),
            "finished_at": rec.finished_at,
            "recorded_report": rec.report,
        }),
        _ => serde_json::Value::Null,
    })
}

/// Daemon side: answer every pending request in `<data_dir>/inspect/` (a missing directory means
/// none) and remove answers nobody collected. `answer_for` runs the query (on the agent's store).
pub fn answer_pending(data_dir: &Path, answer_for: &mut dyn FnMut(&Query) -> serde_json::Value) {
    let dir = data_dir.join(INSPECT_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("request") => {
                let reply = match std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .and_then(|v| Query::from_json(&v))
                {
                    Some(query) => answer_for(&query),
                    None => serde_json::json!({"error": "unreadable inspection request"}),
                };
                let _ = std::fs::remove_file(&path);
                if let Err(e) = write_atomically(&path.with_extension("response"), &reply) {
                    log::warn!(
                        "cannot answer the inspection request {}: {e}",
                        path.display()
                    );
                }
            }
            Some("response") => {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_AFTER);
                if old {
                    let _ = std::fs::remove_file(&path);
                }
            }
            _ => {}
        }
    }
}

fn write_atomically(path: &Path, value: &serde_json::Value) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    // Owner-only: an answer holds a checkpoint's variables, and the data directory may be
    // readable by others (one the robot did not create keeps its owner's mode).
    crate::private_fs::write(&tmp, value.to_string().as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// Inspector side: ask the robot that owns the store in `data_dir`, waiting until `within` for
/// its answer (it answers on its status tick, at most a second later).
pub fn ask(data_dir: &Path, query: &Query, within: Duration) -> Result<serde_json::Value, String> {
    let dir = data_dir.join(INSPECT_DIR);
    crate::private_fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = format!("{}-{:08x}", std::process::id(), fastrand::u32(..));
    let request: PathBuf = dir.join(format!("{name}.request"));
    let response = request.with_extension("response");
    // Written under another name first: the robot never reads half a request.
    write_atomically(&request, &query.to_json())
        .map_err(|e| format!("cannot write {}: {e}", request.display()))?;
    let deadline = Instant::now() + within;
    let reply = loop {
        if let Ok(text) = std::fs::read_to_string(&response) {
            break Some(text);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(&request);
    let _ = std::fs::remove_file(&response);
    let Some(text) = reply else {
        return Err(format!(
            "the robot that owns the store did not answer within {} s (is it stuck? \
             `casare-robot status` tells)",
            within.as_secs()
        ));
    };
    let reply: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("the robot's answer is unreadable: {e}"))?;
    match (reply.get("ok"), reply["error"].as_str()) {
        (Some(value), _) => Ok(value.clone()),
        (None, Some(e)) => Err(e.to_string()),
        (None, None) => Err("the robot's answer is empty".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn answers_are_owner_only_in_a_data_dir_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path();
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The inspector makes the directory (nobody answers here).
        assert!(ask(data_dir, &Query::List, Duration::from_millis(50)).is_err());
        let inspect = data_dir.join(INSPECT_DIR);
        assert_eq!(mode(&inspect) & 0o077, 0, "{:o}", mode(&inspect));
        std::fs::write(inspect.join("x.request"), r#"{"query": "list"}"#).unwrap();
        answer_pending(
            data_dir,
            &mut |_| serde_json::json!({"ok": {"variables": {"password": "hunter2"}}}),
        );
        let response = inspect.join("x.response");
        assert_eq!(mode(&response) & 0o077, 0, "{:o}", mode(&response));
    }

    #[test]
    fn a_request_is_answered_by_whoever_owns_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let owner = std::thread::spawn({
            let data_dir = data_dir.clone();
            move || {
                // Serve until one request has been answered (bounded).
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut seen = Vec::new();
                while seen.is_empty() && Instant::now() < deadline {
                    answer_pending(&data_dir, &mut |q| {
                        seen.push(q.clone());
                        serde_json::json!({"ok": [{"job_id": "j"}]})
                    });
                    std::thread::sleep(Duration::from_millis(10));
                }
                seen
            }
        });
        let got = ask(&data_dir, &Query::Show("j".into()), Duration::from_secs(10)).unwrap();
        assert_eq!(got, serde_json::json!([{"job_id": "j"}]));
        assert_eq!(owner.join().unwrap(), [Query::Show("j".into())]);
        // Nothing is left behind.
        let left: Vec<_> = std::fs::read_dir(data_dir.join(INSPECT_DIR))
            .unwrap()
            .flatten()
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // Nobody answering is a clear error within the deadline.
        let err = ask(&data_dir, &Query::List, Duration::from_millis(100)).unwrap_err();
        assert!(err.contains("did not answer"), "{err}");
    }
}
