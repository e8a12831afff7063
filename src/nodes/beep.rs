//! `BeepNode`: a tone for attended robots.
//!
//! On Windows, `Beep(frequency, duration)` (it blocks for the duration, as upstream's
//! `winsound.Beep`); where that fails (no sound device, a service session) `MessageBeep` plays
//! the default sound. Elsewhere the node writes the terminal bell (BEL) to the robot's console,
//! stderr, when that is a terminal, then waits the duration; a robot without a console (a daemon
//! with stderr redirected) logs that no beep sounded and waits the same. The wait is the run's
//! cancellable sleep. `success` says whether a sound was made. `frequency` must be 37-32767 Hz and
//! `duration` 10-10000 ms (the catalogue's ranges; `Beep`'s own limits), else a `ValueError`.

use crate::engine::node::{opt, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::value::Value;
use std::time::Duration;

/// Node types of this family.
pub const NODES: &[NodeDef] = &[NodeDef::plain(
    "BeepNode",
    &[
        opt("frequency", Lit::Int(440)),
        opt("duration", Lit::Int(200)),
    ],
    &["success"],
    beep,
)];

fn ranged(ctx: &NodeCtx<'_>, name: &str, min: i64, max: i64, unit: &str) -> Result<u32, NodeError> {
    let v = ctx.param_i64(name)?;
    if !(min..=max).contains(&v) {
        return Err(NodeError::value(format!(
            "{name} must be from {min} to {max} {unit}, got {v}"
        )));
    }
    Ok(v as u32)
}

fn beep(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let frequency = ranged(ctx, "frequency", 37, 32767, "Hz")?;
    let duration = ranged(ctx, "duration", 10, 10_000, "ms")?;
    let sounded = sound(ctx, frequency, duration)?;
    ctx.set_output("success", Value::Bool(sounded));
    Ok(Flow::Next)
}

#[cfg(windows)]
fn sound(ctx: &mut NodeCtx<'_>, frequency: u32, duration: u32) -> Result<bool, NodeError> {
    use windows_sys::Win32::System::Diagnostics::Debug::{Beep, MessageBeep};
    use windows_sys::Win32::UI::WindowsAndMessaging::MB_OK;
    // SAFETY: plain calls with integer arguments.
    if unsafe { Beep(frequency, duration) } != 0 {
        return Ok(true);
    }
    // SAFETY: as above.
    let played = unsafe { MessageBeep(MB_OK) } != 0;
    if !played {
        ctx.log(
            log::Level::Info,
            "no sound device answered; no beep sounded",
        );
    }
    ctx.sleep(Duration::from_millis(u64::from(duration)))?;
    Ok(played)
}

#[cfg(not(windows))]
fn sound(ctx: &mut NodeCtx<'_>, _frequency: u32, duration: u32) -> Result<bool, NodeError> {
    use std::io::{IsTerminal, Write};
    let stderr = std::io::stderr();
    let rang = stderr.is_terminal() && {
        let mut lock = stderr.lock();
        lock.write_all(b"\x07").and_then(|()| lock.flush()).is_ok()
    };
    if !rang {
        ctx.log(
            log::Level::Info,
            "the robot has no console to beep on (stderr is not a terminal); no beep sounded",
        );
    }
    ctx.sleep(Duration::from_millis(u64::from(duration)))?;
    Ok(rang)
}

#[cfg(test)]
mod tests {
    use crate::nodes::testing::{ok, one};
    use serde_json::json;

    #[test]
    fn beep_checks_ranges_and_waits_the_duration() {
        let started = std::time::Instant::now();
        let ran = one("BeepNode", json!({"duration": 50}));
        ok(&ran);
        assert!(started.elapsed() >= std::time::Duration::from_millis(50));
        // Under the test harness stderr is captured, not a terminal: a logged no-op.
        #[cfg(not(windows))]
        {
            use crate::engine::Value;
            use std::io::IsTerminal;
            if !std::io::stderr().is_terminal() {
                assert_eq!(ran.out("n", "success"), Value::Bool(false));
                assert_eq!(
                    ran.logs,
                    ["the robot has no console to beep on (stderr is not a terminal); no beep sounded"]
                );
            }
        }
        let ran = one("BeepNode", json!({"frequency": 20}));
        assert_eq!(
            ran.error(),
            "n (BeepNode): frequency must be from 37 to 32767 Hz, got 20"
        );
        let ran = one("BeepNode", json!({"duration": 20000}));
        assert_eq!(
            ran.error(),
            "n (BeepNode): duration must be from 10 to 10000 ms, got 20000"
        );
    }
}
