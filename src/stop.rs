//! The one way a program stops on SIGINT or SIGTERM: [`Stop`].
//!
//! A program that has something to finish before it exits (window-agg's last window, a server's
//! in-flight requests, chat-relay's workers) calls [`Stop::listen`] at the start of its run,
//! *before it starts any thread*. From then on SIGINT and SIGTERM are blocked in every thread and
//! wait on a signalfd instead of killing the process, and the program asks the [`Stop`] in the way
//! that fits its loop:
//!
//! - a blocking loop polls [`Stop::requested`] between pieces of work;
//! - a tokio server awaits [`Stop::wait`];
//! - a `poll(2)` loop (the chat hub) adds [`Stop::fd`] to its fds and reads [`Stop::take_signal`], which
//!   also hands out the extra signals it asked for ([`Stop::listen_also`], e.g. `SIGCHLD`).
//!
//! Either way the reason comes back as [`Stopped`], whose [`Stopped::into_result`] is the
//! documented exit: SIGTERM is a graceful stop (exit 0), SIGINT exits 130. Programs that never call
//! [`Stop::listen`] keep the default action of both signals: they die at once.
//!
//! Blocked signals are inherited by threads and forked children alike, which is the point (a
//! worker forked by chat-relay calls [`Stop::listen`] again for its own signalfd); they are also
//! inherited through `exec`, so a program that spawns another with [`std::process::Command`] after
//! listening must unblock them in the child ([`unblock_in_child`], which reprice's data-manager child gets).

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::{Error, Result};

/// Why a program was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM: finish what is in hand, then exit 0.
    Terminated,
    /// SIGINT: finish what is in hand, then exit 130.
    Interrupted,
}

impl Stopped {
    /// The stop reason a signal stands for, if it is one of the two.
    pub fn from_signal(signal: Signal) -> Option<Stopped> {
        match signal {
            Signal::SIGTERM => Some(Stopped::Terminated),
            Signal::SIGINT => Some(Stopped::Interrupted),
            _ => None,
        }
    }

    /// The program's result after a graceful stop for this reason.
    pub fn into_result(self) -> Result<()> {
        match self {
            Stopped::Terminated => Ok(()),
            Stopped::Interrupted => Err(Error::Interrupted),
        }
    }
}

/// SIGINT and SIGTERM (and any extra signals asked for), taken through a signalfd.
#[derive(Debug)]
pub struct Stop {
    fd: SignalFd,
    /// The first stop signal seen, kept once read.
    stopped: Option<Stopped>,
}

impl Stop {
    /// Take SIGINT and SIGTERM from now on. Call before the program starts a thread: a thread
    /// started earlier would still die of them.
    pub fn listen() -> Result<Stop> {
        Stop::listen_also(&[])
    }

    /// Like [`Stop::listen`], also taking `extra` signals (read them with [`Stop::take_signal`]).
    pub fn listen_also(extra: &[Signal]) -> Result<Stop> {
        let mut mask = SigSet::empty();
        for signal in [Signal::SIGTERM, Signal::SIGINT].iter().chain(extra) {
            mask.add(*signal);
        }
        mask.thread_block()
            .map_err(|e| Error::io("blocking signals", e.into()))?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| Error::io("creating a signalfd", e.into()))?;
        Ok(Stop { fd, stopped: None })
    }

    /// Readable when a signal is waiting, for a `poll(2)` loop.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The next waiting signal, without blocking; a stop signal is also remembered for
    /// [`Stop::requested`].
    pub fn take_signal(&mut self) -> Option<Signal> {
        let info = self.fd.read_signal().ok().flatten()?;
        let signal = Signal::try_from(info.ssi_signo as i32).ok()?;
        if let Some(why) = Stopped::from_signal(signal) {
            self.stopped.get_or_insert(why);
        }
        Some(signal)
    }

    /// Whether a stop signal has arrived (the first one's reason), without blocking.
    pub fn requested(&mut self) -> Option<Stopped> {
        while self.stopped.is_none() && self.take_signal().is_some() {}
        self.stopped
    }

    /// Resolve at the first stop signal. Needs a tokio runtime with I/O enabled.
    pub async fn wait(mut self) -> Stopped {
        use tokio::io::unix::AsyncFd;
        use tokio::io::Interest;
        if let Some(why) = self.requested() {
            return why;
        }
        // SAFETY: the SignalFd owns its descriptor, which stays open and the same for as long as
        // the AsyncFd owns the SignalFd.
        let fd = match unsafe { AsyncFd::register_with_interest(self.fd, Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => {
                // Cannot happen with a signalfd on Linux; without a way to wait, never stop.
                crate::runner::warn(format_args!("cannot wait for signals: {e}"));
                return std::future::pending().await;
            }
        };
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return std::future::pending().await;
            };
            while let Ok(Some(info)) = fd.get_ref().read_signal() {
                let stop = Signal::try_from(info.ssi_signo as i32)
                    .ok()
                    .and_then(Stopped::from_signal);
                if let Some(why) = stop {
                    return why;
                }
            }
            ready.clear_ready();
        }
    }
}

/// Ignore SIGTTIN: a program in the background of an interactive shell that reads the terminal
/// then gets EIO (the end of its input) instead of being stopped.
pub fn ignore_terminal_reads() {
    // SAFETY: setting a disposition to SIG_IGN installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGTTIN, nix::sys::signal::SigHandler::SigIgn);
    }
}

/// Unblock every signal in a child about to `exec`, so a program started after [`Stop::listen`]
/// gets the default actions back: hand it to `pre_exec` of a std or tokio `Command`. It is
/// async-signal-safe (one `sigprocmask`) and allocates nothing.
pub fn unblock_in_child() -> std::io::Result<()> {
    SigSet::empty()
        .thread_set_mask()
        .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_sigterm_is_a_graceful_stop_and_sigint_an_interruption() {
        // Test threads share the process: block in this thread only; raise(3) signals this thread.
        let mut stop = Stop::listen_also(&[Signal::SIGUSR2]).unwrap();
        assert_eq!(stop.requested(), None);
        nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
        assert_eq!(stop.take_signal(), Some(Signal::SIGUSR2));
        assert_eq!(stop.requested(), None);
        nix::sys::signal::raise(Signal::SIGINT).unwrap();
        assert_eq!(stop.requested(), Some(Stopped::Interrupted));
        assert!(matches!(
            Stopped::Interrupted.into_result(),
            Err(Error::Interrupted)
        ));
        assert!(Stopped::Terminated.into_result().is_ok());
    }
}
