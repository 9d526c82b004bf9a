//! The one way the CLI writes to stdout. A reader that stops early (`homeport status | head -1`,
//! `homeport logs -f | head`, `homeport backup verify | head -1`) closes the pipe: that is
//! success, not a panic, and the command carries on or ends as it would have.

use std::io::Write;

use crate::Failure;

/// Writes `text` to stdout; false when the reader has gone. Through `anstream`, which drops
/// colour escapes when this run is not coloured (see [`crate::style`]).
pub fn write(text: &str) -> Result<bool, Failure> {
    let mut out = anstream::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::new(1, format!("cannot write the output: {e}"))),
    }
}

/// `println!` through [`write`]: evaluates to `Result<bool, Failure>` (false: the reader has gone).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::write(&format!("{}\n", format_args!($($arg)*)))
    };
}
