//! What the agent tells operators: the status snapshot (shared with `/health` and the tray, and
//! written to `<data_dir>/status.json` for `casare-robot status`), the metrics (heartbeat
//! summary, Prometheus text) and the last error.
//!
//! Published at most once a second from the agent's timers, at once on state changes that an
//! operator would look for (a job started or ended, a link went up or down), and a last time
//! with state `stopped` when the agent ends.

use super::Agent;
use crate::observe::metrics::Queues;
use crate::observe::status::{write_status_file, ConnectionStatus, JobStatus, StatusSnapshot};
use std::time::{Duration, Instant};

/// Minimum time between two status file writes.
const STATUS_FILE_EVERY: Duration = Duration::from_secs(1);
/// The status file is rewritten at least this often, changed or not (readers judge a robot that
/// stops refreshing it as not responding after 10 s).
const STATUS_FILE_KEEPALIVE: Duration = Duration::from_secs(4);

/// The snapshot without what changes every second anyway (times, resources): a change here is
/// worth a file write.
fn stable_view(s: &StatusSnapshot) -> StatusSnapshot {
    let mut v = s.clone();
    v.updated_at.clear();
    v.uptime_seconds = 0.0;
    v.metrics = serde_json::Value::Null;
    v.connection.down_for_seconds = v.connection.down_for_seconds.map(|_| 0.0);
    for j in &mut v.jobs {
        j.running_seconds = 0.0;
        j.since_progress_seconds = 0.0;
    }
    v
}

impl Agent {
    pub(super) fn queues(&self) -> Queues {
        Queues {
            running: self.jobs.len(),
            waiting: self.waiting.len() + self.verifying.len(),
            outbox: self.store.lock().outbox_len(None).unwrap_or(0),
            control: self.control.len(),
        }
    }

    /// True while some configured link to the orchestrator is up.
    pub(super) fn link_up(&self) -> bool {
        self.connected || self.rest_reachable == Some(true)
    }

    /// Track when every link went down (for `/health`).
    pub(super) fn note_links(&mut self) {
        if self.link_up() {
            self.down_since = None;
        } else if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
        }
    }

    /// Remember an error for `status` and `/health` readers.
    pub(super) fn note_error(&mut self, text: impl Into<String>) {
        self.last_error = Some((text.into(), chrono::Utc::now().to_rfc3339()));
    }

    fn state_name(&self) -> &'static str {
        if self.done {
            "stopped"
        } else {
            self.status().as_str()
        }
    }

    fn snapshot(&self, now: Instant) -> StatusSnapshot {
        let link = self.conn.as_ref().map(|c| c.snapshot(now));
        let unauthorized = self.rest_refused
            || link
                .as_ref()
                .is_some_and(|l| l.state == super::connection::LinkState::Unauthorized);
        let mut jobs: Vec<JobStatus> = self
            .jobs
            .iter()
            .map(|(id, j)| JobStatus {
                job_id: id.clone(),
                progress: j.progress(),
                current_node: j.current_node(),
                running_seconds: round1(now.duration_since(j.started).as_secs_f64()),
                since_progress_seconds: round1(j.since_progress(now).as_secs_f64()),
                state: j.state_name().into(),
            })
            .collect();
        jobs.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        let queues = self.queues();
        let (durable, store_damage) = {
            let store = self.store.lock();
            (store.is_durable(), store.damage().map(|d| d.summary()))
        };
        StatusSnapshot {
            robot_id: self.settings.robot_id.clone(),
            robot_name: self.settings.robot_name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            state: self.state_name().into(),
            connection: ConnectionStatus {
                websocket: link.as_ref().map(|l| {
                    serde_json::to_value(l.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                }),
                breaker: link.as_ref().map(|l| l.breaker.state.as_str().to_string()),
                rest: self.rest.as_ref().map(|_| {
                    match self.rest_reachable {
                        _ if self.rest_refused => "unauthorized",
                        Some(true) => "reachable",
                        Some(false) => "unreachable",
                        None => "unknown",
                    }
                    .to_string()
                }),
                unauthorized,
                down_for_seconds: self
                    .down_since
                    .map(|t| round1(now.duration_since(t).as_secs_f64())),
            },
            jobs,
            waiting_jobs: queues.waiting,
            max_concurrent_jobs: self.settings.max_concurrent_jobs,
            outbox: queues.outbox,
            queued_messages: queues.control,
            durable,
            store_damage,
            last_error: self.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: self.last_error.as_ref().map(|(_, t)| t.clone()),
            metrics: self.metrics.get_full_report(queues),
            uptime_seconds: round1(now.duration_since(self.started).as_secs_f64()),
            updated_at: chrono::Utc::now().to_rfc3339(),
            log_file: self.settings.log_file.clone(),
            config_file: self.settings.config_file.clone(),
        }
    }

    /// Publish within 100 ms: a burst of job ends or deliveries costs one snapshot.
    pub(super) fn publish_soon(&mut self) {
        self.next_status = self
            .next_status
            .min(Instant::now() + Duration::from_millis(100));
    }

    /// Publish the snapshot and the metrics text; write the status file when due (or `force`).
    pub(super) fn publish_status(&mut self, force: bool) {
        let now = Instant::now();
        self.next_status = now + STATUS_FILE_EVERY;
        let snap = self.snapshot(now);
        let queues = Queues {
            running: snap.jobs.len(),
            waiting: snap.waiting_jobs,
            outbox: snap.outbox,
            control: snap.queued_messages,
        };
        let extra = [
            (
                "link_up",
                "1 while a link to the orchestrator is up.",
                f64::from(u8::from(self.link_up())),
            ),
            (
                "paused",
                "1 while the robot does not take new jobs.",
                f64::from(u8::from(self.paused)),
            ),
        ];
        *self.metrics_text.write() = self.metrics.prometheus(queues, &extra);
        let since = self.last_status_file.map(|t| now.duration_since(t));
        let stable = stable_view(&snap);
        let changed = self.last_status_written.as_ref() != Some(&stable);
        let due = force
            || since
                .is_none_or(|d| d >= STATUS_FILE_KEEPALIVE || (changed && d >= STATUS_FILE_EVERY));
        if due {
            self.last_status_written = Some(stable);
            if let Some(dir) = &self.settings.status_dir {
                if let Err(e) = write_status_file(dir, &snap) {
                    if !self.status_file_failed {
                        log::warn!(
                            "cannot write the status file in {}: {e}; `casare-robot status` will not see this robot",
                            dir.display()
                        );
                        self.status_file_failed = true;
                    }
                } else {
                    self.status_file_failed = false;
                }
            }
            self.last_status_file = Some(now);
        }
        *self.status.write() = snap;
        // `checkpoints list/show` from another process: answered here, on this store.
        if let Some(dir) = &self.settings.status_dir {
            let store = &self.store;
            crate::observe::inspect::answer_pending(dir, &mut |query| {
                crate::observe::inspect::answer(&store.lock(), query)
            });
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
