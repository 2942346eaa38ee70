//! What the commands print, through `out!`, `outln!` and `errln!` rather than `println!`.
//!
//! `println!` panics when the reader of a pipe has gone (`perch plan --json | head`). Here a
//! reader that stops reading is the reader's choice: the command still does all of its
//! work, prints nothing more and exits with its own code, as it would have. Any other
//! failure to write standard output (a full disk behind `>`) is an error: the command exits
//! 1 and says so on standard error, so that a script never takes a cut-short plan for a
//! whole one. Standard error has nowhere to report its own failures: they are dropped.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to standard output failed: nothing more is written to it.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
/// The first failure to write standard output, unless it was its reader going away.
static STDOUT_FAILURE: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Writes to standard output, unless a write to it failed before.
pub(crate) fn stdout(text: std::fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    if let Err(error) = std::io::stdout().lock().write_fmt(text) {
        stdout_failed(error);
    }
}

/// Writes to standard error; a failure is dropped (there is nowhere left to say it).
pub(crate) fn stderr(text: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(text);
}

fn stdout_failed(error: std::io::Error) {
    STDOUT_GONE.store(true, Ordering::Relaxed);
    if error.kind() != std::io::ErrorKind::BrokenPipe {
        let mut failure = STDOUT_FAILURE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failure.get_or_insert(error);
    }
}

/// Flushes standard output, and returns why it could not all be written, if it could not
/// for any reason other than its reader having gone.
pub(crate) fn finish() -> Option<std::io::Error> {
    if !STDOUT_GONE.load(Ordering::Relaxed)
        && let Err(error) = std::io::stdout().lock().flush()
    {
        stdout_failed(error);
    }
    STDOUT_FAILURE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}
