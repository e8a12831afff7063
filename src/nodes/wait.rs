//! `WaitNode` (alias `BrowserWaitNode`): sleeps `duration` seconds, interruptibly.
//!
//! The sleep wakes at once on cancellation and never passes the node or job deadline (it fails
//! with a timeout instead of sleeping past it).

use crate::engine::node::{opt, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::value::Value;
use std::time::Duration;

/// Node types of this family.
pub const NODES: &[NodeDef] = &[NodeDef::plain(
    "WaitNode",
    &[opt("duration", Lit::Float(1.0))],
    &["waited"],
    wait_node,
)];

fn wait_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let secs = ctx.param_f64("duration")?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(NodeError::value(format!(
            "duration must be a non-negative number of seconds, got {secs}"
        )));
    }
    let secs = secs.min(365.0 * 86_400.0);
    ctx.sleep(Duration::from_secs_f64(secs))?;
    ctx.set_output("waited", Value::Float(secs));
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::engine::runner::{self, NoObserver, RunOptions, RunStatus};
    use crate::engine::{load_str, CancelToken};
    use serde_json::json;
    use std::time::{Duration, Instant};

    #[test]
    fn waits_and_rejects_bad_durations() {
        let ran = run_chain(&[("w", "WaitNode", json!({"duration": 0.01}))]);
        assert!(ran.outcome.success());
        let ran = run_chain(&[("w", "WaitNode", json!({"duration": -1}))]);
        assert_eq!(
            ran.error(),
            "w (WaitNode): duration must be a non-negative number of seconds, got -1"
        );
        let ran = run_chain(&[("w", "WaitNode", json!({"duration": "soon"}))]);
        assert!(
            ran.error()
                .starts_with("w (WaitNode): input 'duration' must be a number"),
            "{}",
            ran.error()
        );
    }

    #[test]
    fn cancel_interrupts_a_long_wait() {
        let wf = load_str(&chain(&[("w", "WaitNode", json!({"duration": 60}))])).unwrap();
        let token = CancelToken::new();
        let other = token.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.cancel("user asked");
        });
        let started = Instant::now();
        let out = runner::run(
            &wf,
            Default::default(),
            &RunOptions::default(),
            &token,
            &mut NoObserver,
        );
        canceller.join().unwrap();
        assert_eq!(out.status, RunStatus::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(out.error_text().unwrap().contains("user asked"));
        // The interrupted node is queued again, so a resume re-runs it.
        assert_eq!(
            out.state.unwrap().queue.front().copied(),
            Some(wf.index["w"])
        );
    }

    #[test]
    fn node_timeout_cuts_a_wait() {
        let wf = load_str(&chain(&[("w", "WaitNode", json!({"duration": 60}))])).unwrap();
        let opts = RunOptions {
            node_timeout: Duration::from_millis(50),
            ..RunOptions::default()
        };
        let out = runner::run(
            &wf,
            Default::default(),
            &opts,
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert_eq!(out.status, RunStatus::Failed);
        let err = out.error.unwrap();
        assert_eq!(err.error_type, "TimeoutError");
        assert_eq!(err.node_id, "w");
    }
}
