//! Console progress for `casare-robot run`: a line per node on stderr, throttled for loops.
//!
//! The first [`DETAILED_LINES`] node completions get a line each; after that a summary line at most
//! once per second, so a 10,000-iteration loop does not drown the terminal (or slow the run).
//! Failures, retries and LogNode lines are always shown.

use crate::engine::node::NodeLog;
use crate::engine::runner::{FailureDisposition, NodeEvent, Observer, RunError, RunState};
use std::io::Write;
use std::time::{Duration, Instant};

/// Node lines printed before switching to periodic summaries.
pub const DETAILED_LINES: u64 = 200;

/// Prints progress to stderr.
pub struct ConsoleProgress {
    quiet: bool,
    lines: u64,
    last_summary: Instant,
    summarised: bool,
}

impl ConsoleProgress {
    /// A printer; `quiet` hides per-node lines.
    pub fn new(quiet: bool) -> ConsoleProgress {
        ConsoleProgress {
            quiet,
            lines: 0,
            last_summary: Instant::now(),
            summarised: false,
        }
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

impl Observer for ConsoleProgress {
    fn node_completed(&mut self, ev: &NodeEvent<'_>, _state: &RunState) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.lines < DETAILED_LINES {
            self.lines += 1;
            let _ = writeln!(
                err,
                "  ok   [{:>3}%] {} ({}) {}",
                ev.percent,
                ev.node_id,
                ev.node_type,
                ms(ev.elapsed)
            );
        } else if !self.summarised || self.last_summary.elapsed() >= Duration::from_secs(1) {
            self.summarised = true;
            self.last_summary = Instant::now();
            let _ = writeln!(
                err,
                "  ...  [{:>3}%] {} node executions so far",
                ev.percent, ev.executions
            );
        }
    }

    fn node_failed(
        &mut self,
        _ev: &NodeEvent<'_>,
        error: &RunError,
        what_next: FailureDisposition,
    ) {
        let mut err = std::io::stderr().lock();
        let _ = match what_next {
            FailureDisposition::Retry(d) => {
                writeln!(err, "  retry {error} (again in {:.1} s)", d.as_secs_f64())
            }
            FailureDisposition::Caught => writeln!(err, "  caught {error}"),
            FailureDisposition::Fatal => writeln!(err, "  FAIL {error}"),
        };
    }

    fn node_log(&mut self, _ev: &NodeEvent<'_>, log: &NodeLog) {
        let _ = writeln!(std::io::stderr().lock(), "  log  {}", log.message);
    }
    fn wants_state(&self) -> bool {
        false
    }
}
