//! What the process does when its standard output or error goes away.
//!
//! `println!` panics ("failed printing to stdout: Broken pipe") when the reader of a pipe has
//! exited, as in `casare-robot nodes | head`. One panic hook, installed by `main` before any
//! command runs, turns that panic into a quiet exit for every command: a closed pipe ends the
//! process with [`EXIT_CLOSED_OUTPUT`] and no message (what Unix tools killed by SIGPIPE
//! report), any other write failure on stdout/stderr with one line naming it and exit code 1.
//! Every other panic goes to the default hook unchanged.

/// Exit code when stdout or stderr was closed by its reader: 128 + SIGPIPE, as a shell reports a
/// Unix tool killed by a broken pipe.
pub const EXIT_CLOSED_OUTPUT: i32 = 141;

/// What a panic message says about the process's output.
#[derive(Debug, PartialEq, Eq)]
pub enum OutputFailure {
    /// The reader of stdout or stderr went away (a closed pipe).
    Closed,
    /// Writing to stdout or stderr failed otherwise (disk full, ...): the message.
    Failed(String),
}

/// Classify a panic message raised by `print!`/`eprint!` (std words it "failed printing to
/// stdout: <io error>"); `None` for any other panic.
pub fn classify_panic(message: &str) -> Option<OutputFailure> {
    let rest = message
        .strip_prefix("failed printing to stdout: ")
        .or_else(|| message.strip_prefix("failed printing to stderr: "))?;
    // io::ErrorKind::BrokenPipe: EPIPE on Unix ("Broken pipe (os error 32)"); on Windows
    // ERROR_BROKEN_PIPE (109) or ERROR_NO_DATA (232, "The pipe is being closed").
    let closed = rest.contains("Broken pipe")
        || rest.contains("os error 32)")
        || rest.contains("os error 109)")
        || rest.contains("os error 232)");
    Some(if closed {
        OutputFailure::Closed
    } else {
        OutputFailure::Failed(message.to_string())
    })
}

/// Install the hook: a closed stdout/stderr exits quietly, other output failures exit with one
/// line, other panics are reported by the default hook.
pub fn exit_quietly_when_output_closes() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        match message.and_then(classify_panic) {
            Some(OutputFailure::Closed) => std::process::exit(EXIT_CLOSED_OUTPUT),
            Some(OutputFailure::Failed(m)) => {
                // stderr may be the stream that failed: the exit code still tells.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "error: {m}");
                std::process::exit(1)
            }
            None => default_hook(info),
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_panics_are_recognised() {
        let check = |message: &str, expected: Option<OutputFailure>| {
            assert_eq!(classify_panic(message), expected, "{message}");
        };
        check(
            "failed printing to stdout: Broken pipe (os error 32)",
            Some(OutputFailure::Closed),
        );
        check(
            "failed printing to stderr: Broken pipe (os error 32)",
            Some(OutputFailure::Closed),
        );
        check(
            "failed printing to stdout: The pipe is being closed. (os error 232)",
            Some(OutputFailure::Closed),
        );
        check(
            "failed printing to stdout: No space left on device (os error 28)",
            Some(OutputFailure::Failed(
                "failed printing to stdout: No space left on device (os error 28)".into(),
            )),
        );
        check("index out of bounds", None);
        check("Broken pipe", None);
    }
}
