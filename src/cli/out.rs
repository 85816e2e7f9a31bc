//! Standard output for the commands whose exit code is their verdict (`check`, `test`, `diff`):
//! a write that fails does not panic. A reader that went away (`| head`) ends the output
//! quietly and the verdict stands; any other failure (a full disk) is reported on stderr and
//! the command exits 1, as its output is incomplete.
use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

pub struct Out {
    out: io::StdoutLock<'static>,
    failed: Option<io::Error>,
}

/// `noteln!("format", args…)`: one line on stderr (a warning or a note beside the output),
/// dropped when stderr cannot be written: the verdict stands.
macro_rules! noteln {
    ($($arg:tt)*) => {
        $crate::cli::out::note(format_args!($($arg)*))
    };
}
pub(crate) use noteln;

/// See [`noteln`].
pub fn note(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `outln!(out, "format", args…)`: one line on [`Out`].
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

impl Out {
    pub fn new() -> Out {
        Out {
            out: io::stdout().lock(),
            failed: None,
        }
    }

    /// Writes `args` and a newline (nothing more once a write failed).
    pub fn line(&mut self, args: fmt::Arguments<'_>) {
        if self.failed.is_none() {
            let written = self
                .out
                .write_fmt(args)
                .and_then(|()| self.out.write_all(b"\n"));
            self.failed = written.err();
        }
    }

    /// Writes `text` as it is.
    pub fn text(&mut self, text: &str) {
        if self.failed.is_none() {
            self.failed = self.out.write_all(text.as_bytes()).err();
        }
    }

    /// The exit code once the output is flushed: `code`, or 1 when it could not all be written
    /// (other than to a reader that went away).
    pub fn finish(mut self, code: ExitCode) -> ExitCode {
        if self.failed.is_none() {
            self.failed = self.out.flush().err();
        }
        match self.failed {
            Some(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                note(format_args!(
                    "partner-gateway: cannot write the output: {e}"
                ));
                ExitCode::from(1)
            }
            _ => code,
        }
    }
}
