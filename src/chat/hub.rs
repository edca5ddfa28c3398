//! The parent process: binds once, forks the workers, supervises them, relays between them, and
//! owns stdin (bot messages) and stdout (the room's log).
//!
//! It is a single-threaded `poll(2)` loop with no async runtime, on purpose: `fork` from a process
//! with threads or a live epoll set is a trap (a child that tidies up a copied tokio object would
//! deregister the parent's sockets from the shared epoll instance). Here a child just drops the
//! parent's plain file descriptors and builds its own runtime.
//!
//! Signals arrive through a `signalfd`: SIGCHLD (a worker ended: reap it, start a new one at once,
//! or after a growing delay if it keeps dying young), SIGTERM/SIGINT (forward SIGTERM to every
//! worker, wait up to [`STOP_GRACE`] for them to close their clients, then SIGKILL the rest).
//!
//! Slow-reader policy: every worker link and stdout has a bounded [`Outbox`]. A message that does
//! not fit is dropped for that reader only and counted (reported when the reader catches up). A
//! worker whose link has stayed full for [`WEDGED_AFTER`] is wedged: it is killed and replaced, so
//! its clients reconnect to a healthy worker. Nobody else ever waits for it.

use std::io::{self, Read};
use std::net::TcpListener as StdListener;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::balance::Loads;
use super::link::{self, Outbox};
use super::message::{self, UserId};
use super::metrics::Relay;
use super::worker::{self, WorkerStart};
use super::Config;
use crate::error::{Error, Result};
use crate::input::{BadLines, Line, Splitter};
use crate::runner::warn;
use crate::stop::{Stop, Stopped};

/// How long workers get to close their clients after SIGTERM before they are killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// A worker whose link to the hub stays full this long is killed and replaced.
pub const WEDGED_AFTER: Duration = Duration::from_secs(5);
/// Bytes queued for one worker (or stdout) before messages for it are dropped.
const OUTBOX_LIMIT: usize = 4 << 20;
/// Writes to stdout are at most this big, so a poll-ready pipe takes them without blocking.
const STDOUT_CHUNK: usize = 4096;
const READ_CHUNK: usize = 64 * 1024;

struct Slot {
    index: usize,
    pid: Option<Pid>,
    link: Option<Link>,
    started: Instant,
    respawn_at: Option<Instant>,
    /// Deaths in a row within a second of starting: the respawn delay doubles with each.
    young_deaths: u32,
}

struct Link {
    stream: UnixStream,
    inbuf: Vec<u8>,
    out: Outbox,
}

/// stdin split into lines by hand, because the hub reads it only when poll says it is readable.
/// The bot's stdin, split into lines by the input rules every program applies.
struct Stdin {
    lines: Splitter,
    bad: BadLines,
}

struct Hub {
    config: Config,
    listener: StdListener,
    slots: Vec<Slot>,
    signals: Stop,
    stdin: Option<Stdin>,
    stdout: Option<Outbox>,
    bot: UserId,
    instance: String,
    page: Arc<str>,
    loads: Arc<Loads>,
    metrics: Relay,
    stopping: Option<(Stopped, Instant)>,
    /// Bad stdin lines, for the exit status (counted here once stdin has ended).
    bad_stdin: u64,
}

/// Start the workers on `listener` and run the hub until a signal stops everything. In a forked
/// worker this returns the worker's own result instead.
pub fn run(
    config: Config,
    signals: Stop,
    listener: StdListener,
    bot: UserId,
    instance: String,
    page: Arc<str>,
) -> Result<()> {
    let slots = (0..config.workers)
        .map(|index| Slot {
            index,
            pid: None,
            link: None,
            started: Instant::now(),
            respawn_at: Some(Instant::now()),
            young_deaths: 0,
        })
        .collect();
    let config_workers = config.workers;
    let max_message = config.limits.max_message;
    let hub = Hub {
        config,
        listener,
        slots,
        signals,
        stdin: Some(Stdin {
            lines: Splitter::new(max_message),
            bad: BadLines::new(false),
        }),
        stdout: Some(Outbox::new(OUTBOX_LIMIT)),
        bot,
        instance,
        page,
        loads: Arc::new(Loads::new(config_workers)?),
        metrics: Relay::new(config_workers)?,
        stopping: None,
        bad_stdin: 0,
    };
    hub.run()
}

/// The signals the hub takes: SIGINT and SIGTERM to stop, SIGCHLD to reap workers. Taken before
/// the listening line is printed, so a SIGTERM sent the moment it appears is a graceful stop, not
/// the default death.
pub fn listen_for_signals() -> Result<Stop> {
    let stop = Stop::listen_also(&[Signal::SIGCHLD])?;
    // A relay started in the background of an interactive shell must not be stopped for reading
    // the terminal: reading then fails with EIO, which ends stdin.
    crate::stop::ignore_terminal_reads();
    Ok(stop)
}

/// What the loop decided after starting a worker.
enum Started {
    Parent,
    // Boxed: the parent's variant is empty, and the child's is taken once per fork.
    Child(Box<WorkerStart>),
}

impl Hub {
    fn run(mut self) -> Result<()> {
        loop {
            let now = Instant::now();
            if self.stopping.is_some() && self.slots.iter().all(|s| s.pid.is_none()) {
                return self.finish();
            }
            if self.stopping.is_none() {
                for i in 0..self.slots.len() {
                    if self.slots[i].respawn_at.is_some_and(|at| at <= now) {
                        if let Started::Child(start) = self.start_worker(i)? {
                            // In the worker: let go of everything that belongs to the parent.
                            drop(self);
                            return worker::run(*start);
                        }
                    }
                }
            }
            self.poll_once()?;
            self.check_deadlines();
        }
    }

    fn start_worker(&mut self, i: usize) -> Result<Started> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::io("creating a worker's socket pair", e.into()))?;
        let listener = self
            .listener
            .try_clone()
            .map_err(|e| Error::io("sharing the listener", e))?;
        let parent = nix::unistd::getpid();
        // SAFETY: the hub is single-threaded (no runtime, no helper threads), so the child starts
        // from a consistent copy of the whole process.
        match unsafe { fork() }.map_err(|e| Error::io("forking a worker", e.into()))? {
            ForkResult::Child => {
                drop(ours);
                // Signals stay blocked until the worker's own handlers are in place.
                // Die with the parent even if it is killed without a chance to stop us.
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
                if nix::unistd::getppid() != parent {
                    return Err(Error::failed("the parent went away while a worker started"));
                }
                Ok(Started::Child(Box::new(WorkerStart {
                    slot: i,
                    listener,
                    link: UnixStream::from(theirs),
                    limits: self.config.limits,
                    http: self.config.http.clone(),
                    redis: self.config.redis.clone(),
                    channel: self.config.channel.clone(),
                    instance: self.instance.clone(),
                    reporter: i == 0,
                    page: self.page.clone(),
                    loads: self.loads.clone(),
                    metrics: self.metrics.slot(i),
                })))
            }
            ForkResult::Parent { child } => {
                drop(theirs);
                drop(listener);
                let stream = UnixStream::from(ours);
                stream
                    .set_nonblocking(true)
                    .map_err(|e| Error::io("setting a worker link non-blocking", e))?;
                let slot = &mut self.slots[i];
                slot.pid = Some(child);
                slot.started = Instant::now();
                slot.respawn_at = None;
                slot.link = Some(Link {
                    stream,
                    inbuf: Vec::new(),
                    out: Outbox::new(OUTBOX_LIMIT),
                });
                Ok(Started::Parent)
            }
        }
    }

    fn poll_once(&mut self) -> Result<()> {
        let timeout = self.poll_timeout();
        let stdin = io::stdin();
        let stdout = io::stdout();
        // Which pollfd is whose: signals, stdin?, stdout?, then one per live link.
        let mut fds: Vec<PollFd> = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
        let stdin_at = self
            .stdin
            .as_ref()
            .filter(|_| self.stopping.is_none())
            .map(|_| {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
        let stdout_at = self.stdout.as_ref().filter(|o| !o.is_empty()).map(|_| {
            fds.push(PollFd::new(stdout.as_fd(), PollFlags::POLLOUT));
            fds.len() - 1
        });
        let mut link_at = Vec::new();
        for slot in &self.slots {
            if let Some(link) = &slot.link {
                let mut flags = PollFlags::POLLIN;
                if !link.out.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                let fd: BorrowedFd<'_> = link.stream.as_fd();
                fds.push(PollFd::new(fd, flags));
                link_at.push((slot.index, fds.len() - 1));
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(()),
            Err(e) => return Err(Error::io("waiting for events", e.into())),
        }
        let ready = |i: usize| fds[i].revents().unwrap_or(PollFlags::empty());
        let signals_ready = !ready(0).is_empty();
        let stdin_ready = stdin_at.is_some_and(|i| !ready(i).is_empty());
        let stdout_ready = stdout_at.is_some_and(|i| !ready(i).is_empty());
        let links_ready: Vec<(usize, PollFlags)> = link_at
            .iter()
            .map(|&(slot, i)| (slot, ready(i)))
            .filter(|(_, r)| !r.is_empty())
            .collect();
        drop(fds);

        if signals_ready {
            self.take_signals();
        }
        if stdin_ready {
            self.read_stdin();
        }
        for (slot, flags) in links_ready {
            if flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                self.read_link(slot);
            }
            if flags.contains(PollFlags::POLLOUT) {
                self.write_link(slot);
            }
        }
        if stdout_ready {
            self.write_stdout();
        }
        Ok(())
    }

    fn poll_timeout(&self) -> PollTimeout {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut consider = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        if self.stopping.is_none() {
            self.slots
                .iter()
                .filter_map(|s| s.respawn_at)
                .for_each(&mut consider);
        }
        if let Some((_, deadline)) = self.stopping {
            consider(deadline);
        }
        for slot in &self.slots {
            if let Some(since) = slot.link.as_ref().and_then(|l| l.out.full_since) {
                consider(since + WEDGED_AFTER);
            }
        }
        match next {
            None => PollTimeout::NONE,
            Some(at) => {
                let ms = at.saturating_duration_since(now).as_millis() + 1;
                PollTimeout::try_from(ms.min(60_000)).unwrap_or(PollTimeout::MAX)
            }
        }
    }

    fn take_signals(&mut self) {
        while let Some(signal) = self.signals.take_signal() {
            match Stopped::from_signal(signal) {
                Some(why) => self.stop(why),
                None if signal == Signal::SIGCHLD => self.reap(),
                None => {}
            }
        }
    }

    fn stop(&mut self, why: Stopped) {
        if self.stopping.is_some() {
            // Asked twice: do not wait for the workers any longer.
            self.signal_workers(Signal::SIGKILL);
            return;
        }
        self.stopping = Some((why, Instant::now() + STOP_GRACE));
        self.signal_workers(Signal::SIGTERM);
    }

    fn signal_workers(&self, sig: Signal) {
        for pid in self.slots.iter().filter_map(|s| s.pid) {
            let _ = kill(pid, sig);
        }
    }

    fn reap(&mut self) {
        loop {
            let status = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let (pid, how) = match status {
                WaitStatus::Exited(pid, code) => (pid, format!("exited with status {code}")),
                WaitStatus::Signaled(pid, sig, _) => (pid, format!("was killed by {sig}")),
                _ => continue,
            };
            let stopping = self.stopping.is_some();
            let Some(slot) = self.slots.iter_mut().find(|s| s.pid == Some(pid)) else {
                continue;
            };
            slot.pid = None;
            slot.link = None;
            self.loads.down(slot.index);
            self.metrics.worker_ended(slot.index, !stopping);
            if stopping {
                continue;
            }
            let lived = slot.started.elapsed();
            slot.young_deaths = if lived < Duration::from_secs(1) {
                slot.young_deaths + 1
            } else {
                0
            };
            let delay = match slot.young_deaths {
                0 => Duration::ZERO,
                n => Duration::from_millis(100 << n.min(6)),
            };
            slot.respawn_at = Some(Instant::now() + delay);
            warn(format_args!(
                "worker {} (pid {pid}) {how}; starting a new one{}",
                slot.index,
                if delay.is_zero() {
                    String::new()
                } else {
                    format!(" in {delay:?}")
                }
            ));
        }
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        if let Some((_, deadline)) = self.stopping {
            if now >= deadline && self.slots.iter().any(|s| s.pid.is_some()) {
                warn("workers did not stop in time; killing them");
                self.signal_workers(Signal::SIGKILL);
                self.stopping = self.stopping.map(|(why, _)| (why, now + STOP_GRACE));
            }
            return;
        }
        for slot in &self.slots {
            let wedged = slot
                .link
                .as_ref()
                .and_then(|l| l.out.full_since)
                .is_some_and(|since| now.duration_since(since) >= WEDGED_AFTER);
            if let (true, Some(pid)) = (wedged, slot.pid) {
                warn(format_args!(
                    "worker {} (pid {pid}) has not read its messages for {WEDGED_AFTER:?}; killing it",
                    slot.index
                ));
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    fn read_stdin(&mut self) {
        let Some(stdin) = self.stdin.as_mut() else {
            return;
        };
        let mut chunk = vec![0u8; READ_CHUNK];
        // One read per readiness: poll said it will not block.
        let n = match io::stdin().lock().read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(e) => {
                // EIO: a background job reading the terminal. Either way, stdin is over.
                if e.raw_os_error() != Some(nix::libc::EIO) {
                    warn(format_args!("reading stdin: {e}"));
                }
                0
            }
        };
        let mut said = Vec::new();
        let bad = &mut stdin.bad;
        let mut each = |line: Line<'_>| match line.text {
            Ok(text) => said.push(message::bot_line(text, &self.bot)),
            // Never strict: a bad line is reported and skipped, the relay goes on.
            Err(problem) => drop(bad.report(line.at, problem)),
        };
        if n == 0 {
            stdin.lines.finish(&mut each);
        } else {
            stdin.lines.feed(&chunk[..n], &mut each);
        }
        for line in said {
            self.bot_says(line.as_bytes());
        }
        if n == 0 {
            // End of stdin: the relay goes on serving; only the bot has nothing more to say.
            if let Some(stdin) = self.stdin.take() {
                stdin.bad.summarize();
                self.bad_stdin = stdin.bad.skipped();
            }
        }
    }

    /// A bot message: print it and give it to the room.
    fn bot_says(&mut self, said: &[u8]) {
        self.print(said);
        let now = Instant::now();
        if self.config.redis.is_some() {
            // One worker publishes it; Redis brings it to the others.
            if let Some(link) = self.slots.iter_mut().find_map(|s| s.link.as_mut()) {
                link.out.push(Some(link::PUBLISH), said, now);
            }
        } else {
            for link in self.slots.iter_mut().filter_map(|s| s.link.as_mut()) {
                link.out.push(Some(link::DELIVER), said, now);
            }
        }
        self.flush_links();
    }

    fn read_link(&mut self, index: usize) {
        let mut chunk = vec![0u8; READ_CHUNK];
        let Some(link) = self.slots[index].link.as_mut() else {
            return;
        };
        let mut closed = false;
        loop {
            match (&link.stream).read(&mut chunk) {
                // The worker closed its end (it is exiting; SIGCHLD follows) or the link broke.
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    link.inbuf.extend_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        // Whole lines only; what a dying worker said last still counts.
        let lines: Vec<u8> = match memchr::memrchr(b'\n', &link.inbuf) {
            Some(end) => link.inbuf.drain(..=end).collect(),
            None => Vec::new(),
        };
        if closed {
            self.slots[index].link = None;
        }
        let now = Instant::now();
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Some((kind, said)) = link::parse(line) else {
                continue;
            };
            match kind {
                link::SAID => {
                    self.print(said);
                    if self.config.redis.is_none() {
                        for slot in self.slots.iter_mut().filter(|s| s.index != index) {
                            if let Some(link) = slot.link.as_mut() {
                                link.out.push(Some(link::DELIVER), said, now);
                            }
                        }
                    }
                }
                link::REMOTE => self.print(said),
                _ => {}
            }
        }
        self.flush_links();
    }

    /// Write what each link takes now, so a message does not wait for the next poll round.
    fn flush_links(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i]
                .link
                .as_ref()
                .is_some_and(|l| !l.out.is_empty())
            {
                self.write_link(i);
            }
        }
    }

    fn write_link(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let Some(link) = slot.link.as_mut() else {
            return;
        };
        match link.out.write_to(&link.stream, usize::MAX, false) {
            Ok(Some(dropped)) if dropped > 0 => warn(format_args!(
                "worker {} caught up; {dropped} messages for it were dropped while it lagged",
                slot.index
            )),
            Ok(_) => {}
            // A broken link means the worker is dying; SIGCHLD tells the rest.
            Err(_) => slot.link = None,
        }
    }

    fn print(&mut self, said: &[u8]) {
        if let Some(out) = self.stdout.as_mut() {
            out.push(None, said, Instant::now());
        }
    }

    /// Write one chunk to stdout: called only when poll says it is writable, and a chunk of at
    /// most a pipe's atomic size then never blocks.
    fn write_stdout(&mut self) {
        let Some(out) = self.stdout.as_mut() else {
            return;
        };
        if out.is_empty() {
            return;
        }
        let result = out.write_to(io::stdout().lock(), STDOUT_CHUNK, true);
        match result {
            Ok(Some(dropped)) if dropped > 0 => warn(format_args!(
                "stdout caught up; {dropped} messages were not written while it lagged"
            )),
            Ok(_) => {}
            Err(e) => {
                // The reader of our stdout went away (`| head`): the pipeline is done with us.
                self.stdout = None;
                if e.kind() != io::ErrorKind::BrokenPipe {
                    warn(format_args!("writing stdout: {e}"));
                }
                self.stop(Stopped::Terminated);
            }
        }
    }

    fn finish(mut self) -> Result<()> {
        // What is left for stdout, if its reader takes it within a moment: a reader that stopped
        // reading must not keep a stopped relay alive.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.stdout.as_ref().is_some_and(|o| !o.is_empty()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let stdout = io::stdout();
            let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => break,
                Ok(_) => self.write_stdout(),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        let why = self.stopping.map_or(Stopped::Terminated, |(why, _)| why);
        let bad = self.bad_stdin + self.stdin.as_ref().map_or(0, |s| s.bad.skipped());
        if bad > 0 && why == Stopped::Terminated {
            // Bad input lines were skipped: the pipeline contract's exit 1.
            return Err(Error::Reported(1));
        }
        why.into_result()
    }
}
