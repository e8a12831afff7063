//! WebSocket delivery of the outbox.
//!
//! Results always go through the durable outbox; progress and log batches go straight to the
//! socket when it is up and nothing older waits, and into the outbox otherwise (so what a job
//! says while the robot is offline arrives, in order, after the reconnect, even across a
//! restart).
//!
//! The WebSocket has no per-message acknowledgement, so an entry leaves the outbox once the
//! orchestrator answered a heartbeat sent *after* it on the same connection (it processes a
//! connection's frames in order, so it has read the entry). After each batch the agent sends
//! such a marker heartbeat (one outstanding at a time). Entries not acknowledged when the
//! connection drops are sent again after the reconnect: delivery is at least once, and a
//! duplicate result is harmless (the orchestrator settles a job once).
//!
//! Nothing else settles an entry: a connection that stays up (keepalive pings answered by the
//! WebSocket layer) while the orchestrator's handler is stalled acknowledges nothing, and what
//! it was sent is sent again after the reconnect that follows the orchestrator's restart. A
//! server that never answers heartbeats therefore never empties the outbox: its entries are
//! re-sent after every reconnect (and after a robot restart), never lost; the robot says so once
//! per connection at warn level after [`Agent::ack_timeout`], and the outbox count in status and
//! heartbeats shows the backlog.

use super::Agent;
use crate::link::bound;
use crate::link::protocol::{self, Outbound};
use crate::link::ws::Frame;
use crate::resilience::outq::Kind;
use crate::store::jobs::{Report, Route};
use std::time::{Duration, Instant};

/// Entries sent per batch.
const BATCH: usize = 200;

impl Agent {
    /// How long a sent entry waits for a heartbeat acknowledgement before the robot warns that
    /// the orchestrator is not acknowledging (the entry stays in the outbox).
    pub(super) fn ack_timeout(&self) -> Duration {
        (self.settings.heartbeat_interval * 2).max(Duration::from_secs(5))
    }

    /// The frame for an outbox report, within the frame limit for results: a larger result goes
    /// out truncated (its outputs replaced by a note, a long error cut; the store keeps the full
    /// report). Other reports are lossy: [`Agent::ws_send`] drops one over the limit.
    fn encode_report(&mut self, job_id: Option<&str>, report: &Report) -> (String, Kind) {
        let (text, kind) = self.encode_unbounded(job_id, report);
        let limit = self.frame_limit;
        if text.len() <= limit {
            return (text, kind);
        }
        let id = job_id.unwrap_or_default();
        let Some(smaller) =
            report.shrunk(|result| bound::truncated_result(id, result, text.len(), limit))
        else {
            return (text, kind);
        };
        log::warn!(
            "job {id}: its result is {} bytes encoded, over the frame limit of {limit} bytes \
             (max_frame_mb); it is sent truncated and `casare-robot checkpoints show {id}` prints the full result",
            text.len()
        );
        self.encode_unbounded(job_id, &smaller)
    }

    /// The frame for an outbox report, whatever its size.
    fn encode_unbounded(&mut self, job_id: Option<&str>, report: &Report) -> (String, Kind) {
        let job_id = job_id.unwrap_or_default().to_string();
        let (msg, kind) = match report.clone() {
            Report::Complete {
                result,
                duration_ms,
            } => (
                Outbound::JobComplete {
                    job_id,
                    result,
                    duration_ms,
                },
                Kind::Result,
            ),
            Report::Failed {
                error,
                error_type,
                failed_node,
                duration_ms,
            } => (
                Outbound::JobFailed {
                    job_id,
                    error,
                    error_type,
                    failed_node,
                    duration_ms,
                },
                Kind::Result,
            ),
            Report::Cancelled => (Outbound::JobCancelled { job_id }, Kind::Result),
            Report::Progress {
                progress,
                current_node,
                message,
            } => (
                Outbound::JobProgress {
                    job_id,
                    progress,
                    current_node,
                    message,
                },
                Kind::Progress,
            ),
            Report::Logs { logs } => {
                self.log_sequence += 1;
                (
                    Outbound::LogBatch {
                        sequence: self.log_sequence,
                        logs,
                    },
                    Kind::Log,
                )
            }
        };
        (
            protocol::encode(&msg, self.settings.dialect, &self.settings.robot_id),
            kind,
        )
    }

    /// Say `report` on the WebSocket: directly when possible (progress, logs), else through the
    /// outbox.
    pub(super) fn emit_ws(&mut self, job_id: Option<&str>, report: Report) {
        if self.ws.is_none() {
            return;
        }
        let direct = !report.is_result()
            && self.connected
            && !self.delivery.backlog
            && self.control.is_empty();
        if direct {
            let (text, kind) = self.encode_report(job_id, &report);
            self.ws_send(Frame {
                text,
                kind,
                job_id: job_id.map(str::to_string),
            });
            return;
        }
        let pushed = self.store.lock().outbox_push(Route::Ws, job_id, &report);
        match pushed {
            Ok(_) => {
                self.delivery.backlog = true;
                self.sync_ws();
            }
            Err(e) => {
                log::warn!("cannot queue a message in the outbox ({e}); it is dropped");
            }
        }
    }

    /// Send a report without the store (when it failed): now, or queued in memory.
    pub(super) fn send_report_direct(&mut self, job_id: &str, report: &Report) {
        let (text, kind) = self.encode_report(Some(job_id), report);
        let frame = Frame {
            text,
            kind,
            job_id: Some(job_id.to_string()),
        };
        if self.connected && self.control.is_empty() {
            self.ws_send(frame);
        } else {
            let _ = self.control.push(kind, Some(job_id), frame);
        }
    }

    /// Send what the outbox holds for the WebSocket and has not been sent on this connection.
    pub(super) fn sync_ws(&mut self) {
        if !self.connected || self.ws.is_none() {
            return;
        }
        let mut sent = 0;
        loop {
            let batch = self
                .store
                .lock()
                .outbox_after(Route::Ws, self.delivery.cursor, BATCH);
            let entries = match batch {
                Ok(entries) => entries,
                Err(e) => {
                    log::error!("cannot read the outbox: {e}");
                    return;
                }
            };
            if entries.is_empty() {
                break;
            }
            let now = Instant::now();
            for entry in entries {
                // An entry too large to send (not a result: those are truncated) is dropped by
                // `ws_send` and leaves with the next acknowledgement like a sent one.
                let (text, kind) = self.encode_report(entry.job_id.as_deref(), &entry.report);
                self.ws_send(Frame {
                    text,
                    kind,
                    job_id: entry.job_id.clone(),
                });
                self.delivery.cursor = entry.seq;
                self.delivery
                    .inflight
                    .push_back((entry.seq, self.delivery.hb_sent, now));
                sent += 1;
            }
        }
        self.delivery.backlog = false;
        if sent > 0 && self.delivery.hb_sent == self.delivery.hb_acked {
            self.send_ws_heartbeat();
        }
    }

    /// A heartbeat was acknowledged: entries sent before it are delivered.
    pub(super) fn on_heartbeat_ack(&mut self) {
        let d = &mut self.delivery;
        d.hb_acked = (d.hb_acked + 1).min(d.hb_sent);
        let mut settled = Vec::new();
        while let Some(&(seq, marker, _)) = d.inflight.front() {
            if marker >= d.hb_acked {
                break;
            }
            settled.push(seq);
            d.inflight.pop_front();
        }
        self.remove_delivered(&settled);
        if !settled.is_empty() && self.delivery.inflight.is_empty() {
            // Everything sent was read: no frame was refused.
            self.frame_refusals.on_ack();
        }
        if !self.delivery.inflight.is_empty() && self.delivery.hb_sent == self.delivery.hb_acked {
            self.send_ws_heartbeat();
        }
        if self.closing() && self.delivery.inflight.is_empty() {
            self.close_ws();
        }
    }

    /// Entries sent long ago on a connection that is still up stay in the outbox (they leave
    /// only on an acknowledgement); say once per connection that the orchestrator is not
    /// acknowledging them.
    pub(super) fn warn_unacked(&mut self, now: Instant) {
        if !self.connected || self.delivery.unacked_warned {
            return;
        }
        let limit = self.ack_timeout();
        let Some(&(_, _, sent)) = self.delivery.inflight.front() else {
            return;
        };
        if now < sent + limit {
            return;
        }
        self.delivery.unacked_warned = true;
        log::warn!(
            "the orchestrator has not acknowledged a heartbeat for {} s; {} sent message(s) stay \
             in the outbox and are sent again after the next reconnect",
            limit.as_secs(),
            self.delivery.inflight.len()
        );
    }

    /// When [`Agent::warn_unacked`] has something to check next.
    pub(super) fn unacked_deadline(&self) -> Option<Instant> {
        if self.delivery.unacked_warned {
            return None;
        }
        let (_, _, sent) = self.delivery.inflight.front()?;
        Some(*sent + self.ack_timeout())
    }

    /// The connection ended with close `code`: lower the frame limit when the orchestrator
    /// refused a frame as too big (see [`bound::FrameRefusals`]), so the refused frame goes out
    /// smaller (a result truncated) after the reconnect instead of the same frame forever. Call
    /// before the in-flight entries are cleared.
    pub(super) fn check_frame_refused(&mut self, code: Option<u16>) {
        let unacked = !self.delivery.inflight.is_empty();
        let largest_sent = self.delivery.largest_sent;
        if let Some(lowered) =
            self.frame_refusals
                .on_close(code, largest_sent, unacked, self.frame_limit)
        {
            log::warn!(
                "the orchestrator refused a message as too big ({}; the largest sent was {} \
                 bytes); messages are now kept under {lowered} bytes",
                match code {
                    Some(bound::MESSAGE_TOO_BIG) => "close code 1009".to_string(),
                    _ => "the connection dropped twice with it unacknowledged".to_string(),
                },
                self.delivery.largest_sent
            );
            self.frame_limit = lowered;
        }
    }

    fn remove_delivered(&mut self, seqs: &[i64]) {
        if seqs.is_empty() {
            return;
        }
        if let Err(e) = self.store.lock().outbox_remove(seqs) {
            log::warn!("cannot remove delivered outbox entries: {e}");
        }
    }

    /// Send the buffered job log lines (batches of at most 100).
    pub(super) fn flush_logs(&mut self) {
        if self.logs.is_empty() {
            return;
        }
        let logs = std::mem::take(&mut self.logs);
        for chunk in logs.chunks(100) {
            self.emit_ws(
                None,
                Report::Logs {
                    logs: chunk.to_vec(),
                },
            );
        }
    }
}
