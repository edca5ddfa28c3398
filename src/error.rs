//! The one error type of pipeworks and the exit-code table.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success; also a quiet end when stdout's reader went away (`… \| head`) |
//! | 1    | data or runtime error: bad lines were skipped, I/O failed, a server could not be reached |
//! | 2    | usage error: bad flags or a bad config file value (clap exits 2 for its own errors too) |
//! | 130  | interrupted by SIGINT |

use std::fmt;
use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// The command line or config asks for something impossible (exit 2).
    Usage(String),
    /// Bad data or a runtime failure, with its context (exit 1).
    Failed(String),
    /// An I/O error, with what was being done when it happened (exit 1, or a quiet 0 on a broken pipe).
    Io { context: String, source: io::Error },
    /// The problem was already reported on stderr; only the exit code remains to be given.
    Reported(u8),
    /// Stopped by SIGINT (exit 130) or SIGTERM (exit 0, a graceful stop is a success).
    Interrupted,
}

impl Error {
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn failed(msg: impl Into<String>) -> Self {
        Error::Failed(msg.into())
    }

    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Failed(_) => 1,
            Error::Io { .. } if self.is_broken_pipe() => 0,
            Error::Io { .. } => 1,
            Error::Reported(code) => *code,
            Error::Interrupted => 130,
        }
    }

    /// The reader of our stdout went away: the pipeline is done with us, so we end quietly.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }

    /// Whether the runner should print this error (some were already reported, some are silent).
    pub fn is_silent(&self) -> bool {
        matches!(self, Error::Reported(_) | Error::Interrupted) || self.is_broken_pipe()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) | Error::Failed(msg) => f.write_str(msg),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Reported(code) => write!(f, "failed (exit {code})"),
            Error::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for Error {}

/// Writing to stdout is the common case: a bare `?` on an output error names it.
impl From<io::Error> for Error {
    fn from(source: io::Error) -> Self {
        Error::io("writing output", source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_table() {
        assert_eq!(Error::usage("x").exit_code(), 2);
        assert_eq!(Error::failed("x").exit_code(), 1);
        assert_eq!(Error::Interrupted.exit_code(), 130);
        let pipe = Error::io("writing", io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(pipe.exit_code(), 0);
        assert!(pipe.is_silent());
        let other = Error::io("reading x", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(other.exit_code(), 1);
        assert!(!other.is_silent());
    }
}
