//! The one wrapper for a program a test keeps running: our servers, our streaming programs, a real
//! memcached or redis-server. Its stdout and stderr are read line by line as they come; a test
//! waits for a line (an event), never for time. Killed (and reaped) when dropped, its whole
//! process group too when it has one; stderr is shown if the test is failing.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use super::{free_port, wait_for_port};

/// How long the waits that take no duration (`json`, `rest`, the listening line) wait.
pub const WITHIN: Duration = Duration::from_secs(15);

/// A running program.
pub struct Daemon {
    pub child: Child,
    /// Where it listens (`0.0.0.0:0` for a program that does not).
    pub addr: SocketAddr,
    name: String,
    output: Arc<Output>,
    /// Lines the consuming reads (`next_line`, `wait_stderr`) have passed.
    stdout_seen: AtomicUsize,
    stderr_seen: AtomicUsize,
    group: bool,
}

/// What the reader threads have read so far.
#[derive(Default)]
struct Output {
    lines: Mutex<Lines>,
    grew: Condvar,
}

#[derive(Default)]
struct Lines {
    stdout: Vec<String>,
    stderr: Vec<String>,
    /// Pipes still open (0, 1 or 2).
    open: usize,
}

/// How to start a [`Daemon`]: [`Daemon::program`], then options, then [`Start::start`].
pub struct Start {
    command: Command,
    name: String,
    listens: bool,
    port: Option<u16>,
    group: bool,
    read_stdout: bool,
    each_line: Option<mpsc::Sender<()>>,
}

impl Start {
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Start {
        for a in args {
            self.name.push(' ');
            self.name.push_str(&a.as_ref().to_string_lossy());
            self.command.arg(a);
        }
        self
    }

    /// Stdin (closed by default); `Stdio::piped()` for [`Daemon::send`] and [`Daemon::feed`].
    pub fn stdin(mut self, stdin: impl Into<Stdio>) -> Start {
        self.command.stdin(stdin);
        self
    }

    /// In a process group of its own (a forking server such as chat-relay):
    /// [`Daemon::signal_group`] reaches every worker, and so does the final kill.
    pub fn in_group(mut self) -> Start {
        self.group = true;
        self
    }

    /// Wait until it prints `listening on http://ADDR` on stderr; that is its [`Daemon::addr`].
    pub fn listening(mut self) -> Start {
        self.listens = true;
        self
    }

    /// Wait until something accepts connections on 127.0.0.1:`port` (a server that does not say).
    pub fn on_port(mut self, port: u16) -> Start {
        self.port = Some(port);
        self
    }

    /// Leave stdout piped in `child.stdout` for the test to read (or to close, as `| head -1`
    /// does) itself.
    pub fn stdout_to_test(mut self) -> Start {
        self.read_stdout = false;
        self
    }

    /// Send a message on `tx` for each stdout line as it is read (to wait for lines from several
    /// programs at once).
    pub fn notify_each_line(mut self, tx: mpsc::Sender<()>) -> Start {
        self.each_line = Some(tx);
        self
    }

    pub fn start(mut self) -> Daemon {
        self.command.stdout(Stdio::piped()).stderr(Stdio::piped());
        if self.group {
            self.command.process_group(0);
        }
        let mut child = self
            .command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (is it installed?): {e}", self.name));
        let output = Arc::new(Output::default());
        output.lines.lock().unwrap().open = 1 + usize::from(self.read_stdout);
        if self.read_stdout {
            let stdout = child.stdout.take().unwrap();
            pump(stdout, output.clone(), true, self.each_line);
        }
        pump(child.stderr.take().unwrap(), output.clone(), false, None);
        let mut daemon = Daemon {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            name: self.name,
            output,
            stdout_seen: AtomicUsize::new(0),
            stderr_seen: AtomicUsize::new(0),
            group: self.group,
        };
        if self.listens {
            let line = daemon
                .find_stderr("listening on http://", 1, Duration::from_secs(20))
                .unwrap_or_else(|| panic!("never said where it listens: {}", daemon.context()));
            let at = line.find("listening on http://").unwrap() + "listening on http://".len();
            daemon.addr = line[at..].trim().parse().unwrap();
        }
        if let Some(port) = self.port {
            daemon.addr = format!("127.0.0.1:{port}").parse().unwrap();
            wait_for_port(daemon.addr, Duration::from_secs(10));
        }
        daemon
    }
}

/// Read `stream` line by line into `output` (stdout or stderr) until it closes.
fn pump(
    stream: impl Read + Send + 'static,
    output: Arc<Output>,
    stdout: bool,
    each_line: Option<mpsc::Sender<()>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut lines = output.lines.lock().unwrap();
            if stdout {
                lines.stdout.push(line);
            } else {
                lines.stderr.push(line);
            }
            drop(lines);
            output.grew.notify_all();
            if let Some(tx) = &each_line {
                let _ = tx.send(());
            }
        }
        output.lines.lock().unwrap().open -= 1;
        output.grew.notify_all();
    });
}

impl Daemon {
    /// Start `exe`: stdin closed, stdout and stderr read as they come (see [`Start`]).
    pub fn program(exe: &str) -> Start {
        let mut command = Command::new(exe);
        command.stdin(Stdio::null());
        Start {
            command,
            name: exe.to_string(),
            listens: false,
            port: None,
            group: false,
            read_stdout: true,
            each_line: None,
        }
    }

    /// A real memcached on a free loopback port.
    pub fn memcached() -> Daemon {
        Daemon::memcached_on(free_port())
    }

    /// A real memcached on `port` (tests that restart it need the same port again).
    pub fn memcached_on(port: u16) -> Daemon {
        // `-u nobody`: as root, memcached refuses to start without a user to switch to.
        let port_text = port.to_string();
        let args = ["-u", "nobody", "-l", "127.0.0.1", "-p", &port_text];
        Daemon::program("memcached")
            .args(args)
            .args(["-U", "0", "-m", "64"])
            .on_port(port)
            .start()
    }

    /// A real redis-server on a free loopback port, with persistence off.
    pub fn redis() -> Daemon {
        Daemon::redis_on(free_port())
    }

    /// A real redis-server on `port`, with persistence off (restartable on the same port).
    pub fn redis_on(port: u16) -> Daemon {
        Daemon::redis_with(port, &["--appendonly", "no"])
    }

    /// A real redis-server on `port` with `extra` settings after the defaults (say
    /// `--appendonly yes --appendfsync always --dir D` for one that survives `kill -9`).
    pub fn redis_with(port: u16, extra: &[&str]) -> Daemon {
        let port_text = port.to_string();
        Daemon::program("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port_text, "--save", ""])
            .args(extra)
            .on_port(port)
            .start()
    }

    /// Start one of our servers with `--listen 127.0.0.1:0` among `args` and wait for the
    /// `listening on http://ADDR` line it prints on stderr.
    pub fn ours(exe: &str, args: &[&str]) -> Daemon {
        Daemon::program(exe).args(args).listening().start()
    }

    /// Like [`Daemon::ours`], in a process group of its own ([`Start::in_group`]).
    pub fn ours_in_group(exe: &str, args: &[&str]) -> Daemon {
        Daemon::program(exe)
            .args(args)
            .listening()
            .in_group()
            .start()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn nix_pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Send `sig` to the process (ignored if it is gone already).
    pub fn signal(&self, sig: Signal) {
        let _ = nix::sys::signal::kill(self.nix_pid(), sig);
    }

    /// Signal the whole process group (started [`Start::in_group`]).
    pub fn signal_group(&self, sig: Signal) {
        assert!(self.group, "not started in a group of its own");
        nix::sys::signal::killpg(self.nix_pid(), sig).unwrap();
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(&self) {
        self.signal(Signal::SIGKILL);
    }

    fn captured(&self) -> MutexGuard<'_, Lines> {
        self.output.lines.lock().unwrap()
    }

    /// Wait (at most until `deadline`) until `ready` holds of what was read; its answer, or
    /// `None` when it never did.
    fn wait_until<T>(
        &self,
        deadline: Instant,
        mut ready: impl FnMut(&Lines) -> Option<T>,
    ) -> Option<T> {
        let mut lines = self.captured();
        loop {
            if let Some(answer) = ready(&lines) {
                return Some(answer);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lines = self.output.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    pub fn stderr_text(&self) -> String {
        let lines = self.captured();
        let mut text = String::new();
        for line in &lines.stderr {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.captured().stdout.clone()
    }

    fn context(&self) -> String {
        format!(
            "{}\n--- stderr so far ---\n{}",
            self.name,
            self.stderr_text()
        )
    }

    /// The `times`-th stderr line (counting from the start) that holds `needle`.
    pub fn find_stderr(&self, needle: &str, times: usize, within: Duration) -> Option<String> {
        self.wait_until(Instant::now() + within, |lines| {
            lines
                .stderr
                .iter()
                .filter(|l| l.contains(needle))
                .nth(times.max(1) - 1)
                .cloned()
        })
    }

    /// Wait until `needle` stands on `count` stderr lines (panics if not within `within`); all of
    /// stderr then.
    pub fn wait_stderr_count(&self, needle: &str, count: usize, within: Duration) -> String {
        assert!(
            self.find_stderr(needle, count, within).is_some(),
            "stderr never showed {needle:?} {count} times: {}",
            self.context()
        );
        self.stderr_text()
    }

    /// Whether stderr holds `needle` (anywhere since the start) within `within`.
    pub fn stderr_says(&self, needle: &str, within: Duration) -> bool {
        self.find_stderr(needle, 1, within).is_some()
    }

    /// The next stderr line, after those this call returned before, that holds `needle` (panics
    /// if none comes within `within`).
    pub fn wait_stderr(&self, needle: &str, within: Duration) -> String {
        let from = self.stderr_seen.load(Ordering::SeqCst);
        let found = self.wait_until(Instant::now() + within, |lines| {
            let at = lines.stderr[from.min(lines.stderr.len())..]
                .iter()
                .position(|l| l.contains(needle))?;
            Some((from + at, lines.stderr[from + at].clone()))
        });
        let (at, line) = found.unwrap_or_else(|| {
            panic!(
                "no stderr line with {needle:?} within {within:?} from {}",
                self.context()
            )
        });
        self.stderr_seen.store(at + 1, Ordering::SeqCst);
        line
    }

    /// The next stdout line within `within` (`Err(true)` once stdout is closed, `Err(false)` on
    /// time-out).
    fn take_line(&self, within: Duration) -> Result<String, bool> {
        let at = self.stdout_seen.load(Ordering::SeqCst);
        let got = self.wait_until(Instant::now() + within, |lines| {
            match lines.stdout.get(at) {
                Some(line) => Some(Ok(line.clone())),
                None if lines.open == 0 => Some(Err(())),
                None => None,
            }
        });
        match got {
            Some(Ok(line)) => {
                self.stdout_seen.store(at + 1, Ordering::SeqCst);
                Ok(line)
            }
            Some(Err(())) => Err(true),
            None => Err(false),
        }
    }

    /// The next stdout line, or `None` once stdout is closed (panics if none comes in `within`).
    pub fn next_line(&self, within: Duration) -> Option<String> {
        match self.take_line(within) {
            Ok(line) => Some(line),
            Err(true) => None,
            Err(false) => panic!("no stdout line within {within:?} from {}", self.context()),
        }
    }

    /// The next stdout line if one comes within `within`.
    pub fn poll_line(&self, within: Duration) -> Option<String> {
        self.take_line(within).ok()
    }

    /// The next stdout line as JSON.
    pub fn json(&self) -> Value {
        let line = self
            .next_line(WITHIN)
            .unwrap_or_else(|| panic!("stdout closed early: {}", self.context()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
    }

    /// Every remaining stdout line as JSON, until the program closes stdout.
    pub fn rest(&self) -> Vec<Value> {
        let mut all = Vec::new();
        while let Some(line) = self.next_line(WITHIN) {
            all.push(
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}")),
            );
        }
        all
    }

    /// Whether a stdout line (any since the start) `matches` within `within`.
    pub fn wait_line(&self, within: Duration, matches: impl Fn(&str) -> bool) -> bool {
        self.wait_until(Instant::now() + within, |lines| {
            lines.stdout.iter().any(|l| matches(l)).then_some(())
        })
        .is_some()
    }

    /// Whether stdout has at least `count` lines within `within`.
    pub fn wait_lines(&self, count: usize, within: Duration) -> bool {
        self.wait_until(Instant::now() + within, |lines| {
            (lines.stdout.len() >= count).then_some(())
        })
        .is_some()
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("stdin is piped")
    }

    /// Write `text` to stdin and flush; false if the program no longer reads it.
    pub fn try_send(&mut self, text: &str) -> bool {
        let stdin = self.stdin();
        stdin.write_all(text.as_bytes()).is_ok() && stdin.flush().is_ok()
    }

    /// Write `text` to stdin and flush (panics if the program no longer reads it).
    pub fn send(&mut self, text: &str) {
        assert!(self.try_send(text), "stdin closed: {}", self.context());
    }

    /// Write all of `data` to stdin from a thread of its own, then close stdin.
    pub fn feed(&mut self, data: impl Into<Vec<u8>>) {
        let mut stdin = self.child.stdin.take().expect("stdin is piped");
        let data = data.into();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }

    pub fn close_stdin(&mut self) {
        self.child.stdin.take();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait for the exit and for stdout and stderr to be read to their end; `None` (after killing
    /// it) if it has not exited within `within`.
    pub fn finish(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // A child it left behind may hold the pipes open; do not wait for that one long.
        self.wait_until(Instant::now() + Duration::from_secs(2), |lines| {
            (lines.open == 0).then_some(())
        });
        Some(status)
    }

    /// Wait for the exit (panics if it has not exited within `within`).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.finish(within)
            .unwrap_or_else(|| panic!("did not exit within {within:?}: {}", self.context()))
    }
}

impl Daemon {
    /// The exit code: `None` when a signal ended it, or when it had not exited within `within`
    /// (it is killed then).
    pub fn exit_code(&mut self, within: Duration) -> Option<i32> {
        self.finish(within).and_then(|status| status.code())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- stderr of {} ---\n{}", self.name, self.stderr_text());
        }
        if self.group {
            let _ = nix::sys::signal::killpg(self.nix_pid(), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
