//! Printing to standard output, for commands whose output is piped.
//!
//! `println!` panics when the reader of a pipe has gone (`workflows show ID | head -1`).
//! These macros stop the command quietly instead, as other command-line tools do: whoever
//! closed the pipe has all the output they wanted.

use std::io::Write;

/// Writes formatted text to standard output; exits quietly (status 0) if the reader has
/// closed the pipe, and with an error for any other failure to write.
pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_fmt(args).and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(1)
        }
    }
}

/// `print!` that stops quietly when standard output is a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*)) };
}

/// `println!` that stops quietly when standard output is a closed pipe.
macro_rules! outln {
    () => { $crate::output::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};
