//! Size bounds of what the robot sends to the orchestrator (sans-IO).
//!
//! A job result carries the workflow's final variables, so one large variable makes a frame
//! (or request body) larger than the server accepts: uvicorn closes a WebSocket with 1009 past
//! 16 MiB, and a robot that sends the same frame again after every reconnect wedges its link for
//! good. This module owns the rules that keep results deliverable:
//! - a result whose encoding exceeds the limit (`max_frame_mb`) is delivered *truncated*: its
//!   outputs are replaced by a note naming the size, the limit and where the full result is
//!   kept (the job's record in the robot's store, printed by `casare-robot checkpoints show ID`
//!   while the record is kept: the newest `finished_job_records` settled jobs);
//! - an error text is cut to [`MAX_ERROR_CHARS`] characters, saying so;
//! - after the server refused a message as too big (close code 1009, or two connections in a row
//!   reset with a large frame unacknowledged: [`FrameRefusals`]) the limit in force shrinks
//!   ([`limit_after_refusal`]), so a refused frame is not sent again unchanged. The lowered
//!   limit lasts until the robot restarts, which may cost one more refusal.
//!
//! Both links use these functions: the WebSocket outbox for frames, rest-io for request bodies.

use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// The default of `max_frame_mb`: half of uvicorn's 16 MiB, leaving room for encodings that
/// repeat the outputs (the casare dialect sends them as `outputs` and `variables`).
pub const DEFAULT_MAX_FRAME_MB: u64 = 8;

/// The smallest limit a refusal can shrink to (a truncated result is far smaller).
pub const MIN_LIMIT: usize = 64 * 1024;

/// Error texts longer than this are cut (the REST `fail` call takes at most 5,000 characters).
pub const MAX_ERROR_CHARS: usize = 5_000;

/// Result fields that hold workflow data (large); every other field is small and kept.
const DATA_FIELDS: [&str; 3] = ["outputs", "variables", "node_outputs"];

/// `result` (the engine's result object) made small: the outputs replaced by a note saying the
/// result was `size` bytes encoded, over `limit`, and where the full result is kept; the other
/// small fields (`success`, `executed_nodes`, `duration_ms`, ...) kept, `truncated: true` added.
pub fn truncated_result(job_id: &str, result: &Value, size: usize, limit: usize) -> Value {
    let mut small = Map::new();
    if let Some(fields) = result.as_object() {
        for (key, value) in fields {
            if !DATA_FIELDS.contains(&key.as_str()) {
                small.insert(key.clone(), value.clone());
            }
        }
    }
    small.insert(
        "outputs".into(),
        json!({ "truncated": truncation_note(job_id, size, limit) }),
    );
    small.insert("truncated".into(), Value::Bool(true));
    small.insert("result_bytes".into(), json!(size));
    Value::Object(small)
}

/// `result` as it is when its JSON encoding fits `limit` bytes, else [`truncated_result`] (with a
/// warn line): the REST result body.
pub fn bounded_result<'a>(job_id: &str, result: &'a Value, limit: usize) -> Cow<'a, Value> {
    let size = encoded_len(result);
    if size <= limit {
        return Cow::Borrowed(result);
    }
    log::warn!(
        "job {job_id}: its result is {size} bytes encoded, over the limit of {limit} bytes \
         (max_frame_mb); it is sent truncated and `casare-robot checkpoints show {job_id}` prints the full result"
    );
    Cow::Owned(truncated_result(job_id, result, size, limit))
}

/// The length of `value`'s compact JSON encoding, counted without building it.
pub fn encoded_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// The note that replaces a truncated result's outputs.
pub fn truncation_note(job_id: &str, size: usize, limit: usize) -> String {
    format!(
        "the result of job {job_id} was {} encoded, over the robot's frame limit of {} \
         (max_frame_mb); its outputs are left out here. The full result is kept in the job's \
         record on the robot: `casare-robot checkpoints show {job_id}` prints it (records of \
         the newest finished_job_records settled jobs are kept)",
        megabytes(size),
        megabytes(limit)
    )
}

/// `error` cut to [`MAX_ERROR_CHARS`] characters (on a character boundary), saying how long it was.
pub fn truncated_error(error: &str) -> String {
    let n_chars = error.chars().count();
    if n_chars <= MAX_ERROR_CHARS {
        return error.to_string();
    }
    let kept: String = error.chars().take(MAX_ERROR_CHARS).collect();
    format!("{kept}… (error text cut: {n_chars} characters)")
}

/// The limit in force after the server refused a message as too big: half the largest message
/// sent on that connection (the refused one was at most that), never above `current`, never below
/// [`MIN_LIMIT`].
pub fn limit_after_refusal(current: usize, largest_sent: usize) -> usize {
    (largest_sent / 2).max(MIN_LIMIT).min(current)
}

/// The close code of a server that refuses a message as too big.
pub const MESSAGE_TOO_BIG: u16 = 1009;

/// Frames at least this large are suspects when a connection drops before acknowledging them.
pub const SUSPECT_BYTES: usize = 1024 * 1024;

/// Connections in a row that may drop with a suspect frame unacknowledged before the limit
/// shrinks below it.
const SUSPECT_DROPS: u32 = 2;

/// When the frame limit shrinks (sans-IO). At once on close code 1009; and when
/// [`SUSPECT_DROPS`] connections in a row ended with a frame of at least [`SUSPECT_BYTES`]
/// unacknowledged: a server that refuses a frame while the robot is still writing it resets the
/// connection, and its 1009 close frame is lost with the reset. An acknowledgement (or a drop
/// without a large frame in flight) starts the count over.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FrameRefusals {
    suspect_drops: u32,
    /// The largest frame sent since the orchestrator last acknowledged everything sent (on this
    /// connection): a frame it acknowledged cannot be the one it refused.
    largest_unacked: usize,
}

impl FrameRefusals {
    /// A frame of `bytes` was sent.
    pub fn on_sent(&mut self, bytes: usize) {
        self.largest_unacked = self.largest_unacked.max(bytes);
    }

    /// A connection ended with close `code`; `largest_sent` is the largest frame sent on it,
    /// `unacked` whether sent entries were waiting for an acknowledgement. A drop is suspect
    /// only when a frame of at least [`SUSPECT_BYTES`] was sent after the last
    /// acknowledgement ([`FrameRefusals::on_sent`], [`FrameRefusals::on_ack`]). Returns the
    /// lowered limit when the limit `current` must shrink.
    pub fn on_close(
        &mut self,
        code: Option<u16>,
        largest_sent: usize,
        unacked: bool,
        current: usize,
    ) -> Option<usize> {
        let largest_unacked = std::mem::take(&mut self.largest_unacked);
        let suspect = unacked && largest_unacked >= SUSPECT_BYTES.min(current);
        if code == Some(MESSAGE_TOO_BIG) {
            self.suspect_drops = 0;
        } else if suspect {
            self.suspect_drops += 1;
            if self.suspect_drops < SUSPECT_DROPS {
                return None;
            }
            self.suspect_drops = 0;
        } else {
            self.suspect_drops = 0;
            return None;
        }
        let lowered = limit_after_refusal(current, largest_sent);
        (lowered < current).then_some(lowered)
    }

    /// The orchestrator acknowledged everything sent on the connection.
    pub fn on_ack(&mut self) {
        self.suspect_drops = 0;
        self.largest_unacked = 0;
    }
}

/// `bytes` in MB with one decimal (1 MB = 1,048,576 bytes, as `max_frame_mb`).
fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_result_keeps_the_small_fields_and_names_size_limit_and_store() {
        let result = json!({"success": true, "status": "completed", "outputs": {"big": "x"},
            "variables": {"big": "x"}, "node_outputs": {"n": 1}, "executed_nodes": 3,
            "total_nodes": 3, "duration_ms": 12, "recovered": false});
        let small = truncated_result("job-7", &result, 18_874_368, 8 * 1_048_576);
        assert_eq!(
            small,
            json!({"success": true, "status": "completed", "executed_nodes": 3,
                "total_nodes": 3, "duration_ms": 12, "recovered": false, "truncated": true,
                "result_bytes": 18_874_368,
                "outputs": {"truncated": "the result of job job-7 was 18.0 MB encoded, over the \
                    robot's frame limit of 8.0 MB (max_frame_mb); its outputs are left out here. The \
                    full result is kept in the job's record on the robot: `casare-robot checkpoints \
                    show job-7` prints it (records of the newest finished_job_records settled jobs \
                    are kept)"}})
        );
        // Not an object: only the note.
        let small = truncated_result("j", &Value::Null, 10, 5);
        assert_eq!(small["truncated"], true);
        assert!(small["outputs"]["truncated"].is_string());
    }

    #[test]
    fn a_result_that_fits_is_sent_as_is() {
        let result = json!({"success": true, "outputs": {"x": "y".repeat(100)}});
        assert_eq!(encoded_len(&result), result.to_string().len());
        assert!(matches!(
            bounded_result("j", &result, 1_000),
            Cow::Borrowed(_)
        ));
        let cut = bounded_result("j", &result, 50);
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["result_bytes"], result.to_string().len());
    }

    /// A close: code, largest frame sent, entries unacknowledged, acknowledged before, new limit.
    type Close = (Option<u16>, usize, bool, bool, Option<usize>);

    #[test]
    fn the_limit_shrinks_on_1009_at_once_and_after_two_suspect_drops_in_a_row() {
        let mb = 1_048_576;
        let limit = 8 * mb;
        // (close code, largest frame sent, unacknowledged entries, acknowledged before,
        // expected new limit)
        #[rustfmt::skip]
        let cases: &[(&str, &[Close])] = &[
            ("1009 shrinks at once", &[(Some(1009), 6 * mb, false, false, Some(3 * mb))]),
            ("1009 after small frames shrinks to the floor",
                &[(Some(1009), 1_000, false, false, Some(MIN_LIMIT))]),
            ("two resets with a large frame unacknowledged",
                &[(None, 6 * mb, true, false, None), (Some(1006), 6 * mb, true, false, Some(3 * mb))]),
            ("an acknowledgement between them starts over",
                &[(None, 6 * mb, true, false, None), (None, 6 * mb, true, true, None),
                  (None, 6 * mb, true, false, Some(3 * mb))]),
            ("a drop without a large frame unacknowledged starts over",
                &[(None, 6 * mb, true, false, None), (None, 6 * mb, false, false, None),
                  (None, 6 * mb, true, false, None)]),
            ("small frames never shrink it",
                &[(None, 1_000, true, false, None), (None, 1_000, true, false, None)]),
        ];
        for (name, closes) in cases {
            let mut refusals = FrameRefusals::default();
            for (idx, &(code, largest, unacked, acked, expected)) in closes.iter().enumerate() {
                if acked {
                    refusals.on_ack();
                }
                refusals.on_sent(largest);
                assert_eq!(
                    refusals.on_close(code, largest, unacked, limit),
                    expected,
                    "{name} #{idx}"
                );
            }
        }
    }

    #[test]
    fn a_large_frame_that_was_acknowledged_is_no_suspect() {
        let mb = 1_048_576;
        let limit = 8 * mb;
        let mut refusals = FrameRefusals::default();
        // On each connection a large result is read (acknowledged), then the connection drops
        // with a small entry unacknowledged (an orchestrator restart): the limit stays.
        for _ in 0..3 {
            refusals.on_sent(6 * mb);
            refusals.on_ack();
            refusals.on_sent(1_000);
            assert_eq!(refusals.on_close(None, 6 * mb, true, limit), None);
        }
        // A large frame still unacknowledged at two drops in a row is.
        refusals.on_sent(6 * mb);
        assert_eq!(refusals.on_close(None, 6 * mb, true, limit), None);
        refusals.on_sent(6 * mb);
        assert_eq!(refusals.on_close(None, 6 * mb, true, limit), Some(3 * mb));
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        assert_eq!(truncated_error("short"), "short");
        let long = "é".repeat(MAX_ERROR_CHARS + 10);
        let cut = truncated_error(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_ERROR_CHARS)));
        assert!(cut.ends_with(&format!(
            "(error text cut: {} characters)",
            MAX_ERROR_CHARS + 10
        )));
    }

    #[test]
    fn a_refusal_halves_the_largest_message_within_bounds() {
        let mb = 1_048_576;
        for (current, largest, expected) in [
            (8 * mb, 6 * mb, 3 * mb),
            (2 * mb, 6 * mb, 2 * mb),
            (8 * mb, 100_000, MIN_LIMIT),
            (8 * mb, 0, MIN_LIMIT),
        ] {
            assert_eq!(
                limit_after_refusal(current, largest),
                expected,
                "{current} {largest}"
            );
        }
    }
}
