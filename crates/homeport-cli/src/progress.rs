//! Progress of long work on a terminal (indicatif): a spinner with the time spent so far, which
//! leaves a finished line behind. Into a pipe or a file there is no spinner, only the finished
//! lines, so a log or a CI job reads the same facts without control characters.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Failure;

/// Whether to draw progress: stdout is a terminal that can redraw a line.
pub fn live() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// A spinner that says what is running, or nothing when [`live`] is false.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub fn start(message: &str) -> Self {
        if !live() {
            return Self(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
        let style = ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(Some(bar))
    }

    /// Prints a line above the spinner (or plainly, without one).
    pub fn println(&self, line: &str) -> Result<bool, Failure> {
        match &self.0 {
            Some(bar) => bar.suspend(|| crate::out::write(&format!("{line}\n"))),
            None => crate::out::write(&format!("{line}\n")),
        }
    }

    /// Removes the spinner; the caller prints the outcome.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `12.3 MiB/s`, from a size and the time it took.
pub fn rate(bytes: u64, ms: u64) -> String {
    if ms == 0 {
        return String::new();
    }
    let per_sec = bytes as f64 * 1000.0 / ms as f64;
    format!(", {}/s", crate::output::size(per_sec as u64))
}

/// `850 ms` or `12.4 s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}
