//! The I/O side of one measurement: open the clients, make sure each has joined the room, run the
//! send schedule, record every delivery per client, and stop at the deadline.
//!
//! Each client is two tasks: a writer that sleeps until each of its scheduled send times (and
//! sends what the reader asks it to: pongs, Socket.IO's keep-alive answers, the roll call), and a
//! reader that records every frame. The clients are spread over a few single-threaded runtimes
//! ([`Shards`], one thread each) rather than one work-stealing runtime: a client's tasks never
//! migrate between threads, which saves the cross-thread wake-ups that otherwise cost the benchmark
//! as much CPU as parsing the frames. The handshake is tungstenite's; after it, a reader parses
//! the server's frames straight out of its read buffer, many per read ([`super::wire`]), finds
//! the stamp in the raw payload (see [`super::stamp`]) without JSON parsing or UTF-8 validation,
//! reads the clock once per read, records a delivery as one bit in its tally, and batches
//! latencies into its shard's histogram, so the benchmark stays cheap next to the server it
//! measures.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use memchr::memmem;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, OpCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::cpu;
use super::progress::Progress;
use super::stamp::{Stamp, StampFinder, ROLL_CALL};
use super::tally::{ClientTally, Cpu, Latencies, Schedule, StepReport, Totals};
use super::wire::{client_frame, client_text, Event, Inbox, Protocol};
use crate::error::{Error, Result};

/// A client connection after its handshake: the socket and the bytes already read past the
/// handshake's response (a Socket.IO server speaks first).
pub struct Conn {
    tcp: TcpStream,
    tail: Vec<u8>,
}

/// Frames a client's reader (or the roll call) asks its writer to send.
type Outbox = mpsc::UnboundedSender<Vec<u8>>;

/// Where the chat server is: the URL for the handshake and the address to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
}

impl Target {
    /// Check a `ws://HOST:PORT/PATH` URL and resolve its host once.
    pub async fn resolve(url: &str) -> Result<Target> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::usage(format!("--url {url}: {e}")))?;
        match uri.scheme_str() {
            Some("ws") => {}
            Some("wss") => {
                return Err(Error::usage(format!(
                "--url {url}: wss:// is not supported; benchmark the server behind its TLS proxy"
            )))
            }
            _ => {
                return Err(Error::usage(format!(
                    "--url {url}: expected ws://HOST:PORT/PATH"
                )))
            }
        }
        let host = uri
            .host()
            .ok_or_else(|| Error::usage(format!("--url {url}: no host")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::io(format!("resolving {host}"), e))?
            .next()
            .ok_or_else(|| Error::failed(format!("{host} has no address")))?;
        Ok(Target {
            url: url.to_string(),
            addr,
        })
    }
}

/// How one step runs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub clients: u32,
    pub duration: Duration,
    pub interval: Duration,
    pub budget: Duration,
    /// After the last send and the budget, how long to wait for stragglers before counting them lost.
    pub grace: Duration,
    /// New connections per second while ramping up.
    pub ramp: f64,
    pub connect_timeout: Duration,
    pub server_pids: Vec<i32>,
    pub protocol: Protocol,
}

/// Single-threaded runtimes, one thread each, that the clients are dealt to round-robin.
pub struct Shards {
    handles: Vec<Handle>,
    threads: Vec<(oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Shards {
    pub fn start(count: usize) -> Result<Shards> {
        let mut shards = Shards {
            handles: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("starting a client runtime", e))?;
            shards.handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("clients-{i}"))
                .spawn(move || {
                    runtime.block_on(async {
                        let _ = stopped.await;
                    })
                })
                .map_err(|e| Error::io("starting a client thread", e))?;
            shards.threads.push((stop, thread));
        }
        Ok(shards)
    }

    /// Which shard client `client` is dealt to.
    fn index(&self, client: usize) -> usize {
        client % self.handles.len()
    }

    fn get(&self, client: usize) -> &Handle {
        &self.handles[self.index(client)]
    }

    fn len(&self) -> usize {
        self.handles.len()
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for (stop, thread) in self.threads.drain(..) {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// At most this many handshakes in flight while ramping.
const HANDSHAKES_IN_FLIGHT: usize = 200;
/// Latencies are moved to the shard's histogram this many at a time, or when the oldest has waited
/// this long (so the progress display's delivery count stays current).
const BATCH: usize = 256;
const BATCH_AGE_US: u64 = 200_000;
/// Each read takes up to this much (a batch of a few hundred small frames); a bigger frame grows
/// the buffer.
const READ_SIZE: usize = 16 * 1024;

/// What every client task shares.
struct Room {
    run: u32,
    protocol: Protocol,
    clock: Instant,
    schedule: Schedule,
    budget_us: u64,
    connected: u32,
    joined: AtomicU32,
    delivered: AtomicU64,
    sent: AtomicU64,
    send_lag_max_us: AtomicU64,
    /// One histogram per shard, merged at the end: the shards' threads never write to the same
    /// counts (one shared histogram had them take turns with its cache lines at every batch).
    latencies: Vec<Mutex<Latencies>>,
    /// Woken when everyone has joined, and at each delivery batch.
    news: Notify,
}

impl Room {
    fn now_us(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }

    fn at(&self, us: u64) -> tokio::time::Instant {
        (self.clock + Duration::from_micros(us)).into()
    }
}

/// Measure one step: `plan.clients` clients chatting for `plan.duration`.
pub async fn measure(
    target: &Target,
    plan: &Plan,
    run: u32,
    shards: &Shards,
    progress: &mut Progress,
) -> Result<StepReport> {
    let wall = Instant::now();
    let cpu_client = cpu::own();
    let cpu_server = (!plan.server_pids.is_empty()).then(|| cpu::server(&plan.server_pids));

    let (sockets, first_error) = ramp_up(target, plan, shards, progress).await;
    let connected = sockets.iter().filter(|s| s.is_some()).count() as u32;
    if connected == 0 {
        let why = first_error.unwrap_or_else(|| "no client connected".into());
        return Err(Error::failed(format!(
            "cannot connect to {}: {why}",
            target.url
        )));
    }
    if connected < plan.clients {
        progress.note(format_args!(
            "{} of {} clients could not connect (first error: {})",
            plan.clients - connected,
            plan.clients,
            first_error.unwrap_or_default()
        ));
    }

    let schedule = Schedule::new(
        plan.clients,
        plan.duration.as_micros() as u64,
        plan.interval.as_micros() as u64,
    );
    let room = Arc::new(Room {
        run,
        protocol: plan.protocol,
        clock: Instant::now(),
        schedule,
        budget_us: plan.budget.as_micros() as u64,
        connected,
        joined: AtomicU32::new(0),
        delivered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        send_lag_max_us: AtomicU64::new(0),
        latencies: (0..shards.len())
            .map(|_| Mutex::new(Latencies::default()))
            .collect(),
        news: Notify::new(),
    });

    let mut stops = Vec::with_capacity(connected as usize);
    let mut starts = Vec::with_capacity(connected as usize);
    let mut caller: Option<Outbox> = None;
    let mut readers = JoinSet::new();
    let mut writers = JoinSet::new();
    for (sender, socket) in sockets.into_iter().enumerate() {
        if let Some(conn) = socket {
            let (read_half, write_half) = conn.tcp.into_split();
            let inbox = Inbox::new(conn.tail, READ_SIZE);
            let (stop, stopped) = oneshot::channel();
            let (start, started) = oneshot::channel();
            let (outbox, outgoing) = mpsc::unbounded_channel();
            stops.push(stop);
            starts.push(start);
            caller.get_or_insert_with(|| outbox.clone());
            let reader = read(
                read_half,
                inbox,
                outbox,
                room.clone(),
                shards.index(sender),
                stopped,
            );
            readers.spawn_on(reader, shards.get(sender));
            writers.spawn_on(
                write(sender as u32, write_half, room.clone(), started, outgoing),
                shards.get(sender),
            );
        }
    }

    progress.phase("roll call", "clients joined", u64::from(connected));
    if let Some(caller) = &caller {
        roll_call(&room, caller, progress).await;
    }

    // Everyone is in the room: start the clock for the schedule a moment from now.
    let t0_us = room.now_us() + 50_000;
    let last_send_us = t0_us + schedule.last_offset_us();
    progress.phase("chatting", "ms", plan.duration.as_millis() as u64);
    for start in starts {
        let _ = start.send(t0_us);
    }
    let deadline_us = last_send_us + room.budget_us + plan.grace.as_micros() as u64;
    let mut sinks = Vec::with_capacity(connected as usize);
    let writers_end = tokio::time::sleep_until(room.at(deadline_us));
    tokio::pin!(writers_end);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            done = writers.join_next() => match done {
                Some(Ok(sink)) => sinks.push(sink),
                Some(Err(_)) => {}
                None => break,
            },
            _ = tick.tick() => {
                let elapsed = room.now_us().saturating_sub(t0_us) / 1000;
                progress.update(elapsed, Some(room.delivered.load(Ordering::Relaxed)));
            }
            // A stalled server can block a send forever; the step ends at its deadline anyway.
            _ = &mut writers_end => {
                writers.abort_all();
                break;
            }
        }
    }

    // Wait for the deliveries still on their way, up to the deadline.
    let sent = room.sent.load(Ordering::SeqCst);
    let expected = sent * u64::from(connected);
    progress.phase("draining", "deliveries", expected);
    loop {
        let delivered = room.delivered.load(Ordering::SeqCst);
        progress.update(delivered, Some(delivered));
        if delivered >= expected || room.now_us() >= deadline_us {
            break;
        }
        let _ = tokio::time::timeout_at(
            room.at(deadline_us)
                .min(tokio::time::Instant::now() + Duration::from_millis(200)),
            room.news.notified(),
        )
        .await;
    }
    for stop in stops {
        let _ = stop.send(());
    }

    let mut totals = Totals {
        clients: plan.clients,
        connected,
        planned: schedule.messages(),
        sent,
        send_lag_max_us: room.send_lag_max_us.load(Ordering::SeqCst),
        ..Totals::default()
    };
    let mut streams = Vec::with_capacity(connected as usize);
    let mut first_drop = None;
    while let Some(done) = readers.join_next().await {
        if let Ok((tally, dropped, stream)) = done {
            totals.add_client(&tally);
            if let Some(why) = dropped {
                totals.disconnected += 1;
                first_drop.get_or_insert(why);
            }
            streams.push(stream);
        }
    }
    if let Some(why) = first_drop {
        progress.note(format_args!(
            "{} clients were disconnected during the step (first: {why})",
            totals.disconnected
        ));
    }
    let cpu = Cpu {
        client_s: (cpu::own() - cpu_client).as_secs_f64(),
        server_s: cpu_server.map(|before| {
            cpu::server(&plan.server_pids)
                .saturating_sub(before)
                .as_secs_f64()
        }),
        wall_s: wall.elapsed().as_secs_f64(),
    };
    let mut latencies = Latencies::default();
    for shard in &room.latencies {
        latencies.add(&shard.lock().unwrap_or_else(|e| e.into_inner()));
    }
    // Hang up: every socket closes when its halves are dropped here.
    drop(streams);
    drop(sinks);
    Ok(StepReport::new(&totals, schedule.rounds, &latencies, cpu))
}

/// Open the connections at `plan.ramp` per second; failed ones are `None`.
async fn ramp_up(
    target: &Target,
    plan: &Plan,
    shards: &Shards,
    progress: &mut Progress,
) -> (Vec<Option<Conn>>, Option<String>) {
    progress.phase("connecting", "connected", u64::from(plan.clients));
    let gate = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    let mut handshakes = JoinSet::new();
    let mut sockets: Vec<Option<Conn>> = (0..plan.clients).map(|_| None).collect();
    let mut first_error = None;
    let mut done = 0u64;
    let start = tokio::time::Instant::now();
    let mut settle = |r: std::result::Result<(usize, std::result::Result<Conn, String>), _>,
                      sockets: &mut Vec<Option<Conn>>| {
        done += 1;
        match r {
            Ok((i, Ok(conn))) => sockets[i] = Some(conn),
            Ok((_, Err(e))) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("{e}"));
            }
        }
        done
    };
    for i in 0..plan.clients as usize {
        let due = start + Duration::from_secs_f64(i as f64 / plan.ramp.max(1.0));
        tokio::time::sleep_until(due).await;
        let permit = loop {
            // Collect finished handshakes while waiting for a free slot.
            if let Ok(p) = gate.clone().try_acquire_owned() {
                break p;
            }
            if let Some(r) = handshakes.join_next().await {
                let n = settle(r, &mut sockets);
                progress.update(n, None);
            }
        };
        let (target, timeout, protocol) = (target.clone(), plan.connect_timeout, plan.protocol);
        // The socket is registered with the runtime of the thread that connects it: its own shard.
        let handshake = async move {
            let r = match tokio::time::timeout(timeout, connect(&target, protocol)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no handshake within {timeout:?}")),
            };
            drop(permit);
            (i, r)
        };
        handshakes.spawn_on(handshake, shards.get(i));
        while let Some(r) = handshakes.try_join_next() {
            let n = settle(r, &mut sockets);
            progress.update(n, None);
        }
    }
    while let Some(r) = handshakes.join_next().await {
        let n = settle(r, &mut sockets);
        progress.update(n, None);
    }
    (sockets, first_error)
}

async fn connect(target: &Target, protocol: Protocol) -> std::result::Result<Conn, String> {
    let mut tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connecting to {}: {e}", target.addr))?;
    // Chat messages are small and latency is the point: no Nagle delay.
    let _ = tcp.set_nodelay(true);
    // tungstenite does the handshake; the recorder keeps every byte it read, so that whatever
    // followed the response in the same read is not lost with tungstenite's buffer.
    let mut recorder = Recorder {
        tcp: &mut tcp,
        seen: Vec::new(),
    };
    // Small buffers: the WebSocket that tungstenite builds after the handshake is dropped unused.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    tokio_tungstenite::client_async_with_config(target.url.as_str(), &mut recorder, Some(config))
        .await
        .map_err(|e| format!("handshake with {}: {e}", target.url))?;
    let seen = recorder.seen;
    // The response tungstenite accepted ends at the first blank line.
    let tail = memmem::find(&seen, b"\r\n\r\n")
        .map(|end| seen[end + 4..].to_vec())
        .unwrap_or_default();
    if let Some(hello) = protocol.hello() {
        tcp.write_all(&client_text(hello))
            .await
            .map_err(|e| format!("greeting {}: {e}", target.url))?;
    }
    Ok(Conn { tcp, tail })
}

/// The socket as the handshake sees it, keeping a copy of what was read.
struct Recorder<'a> {
    tcp: &'a mut TcpStream,
    seen: Vec<u8>,
}

impl AsyncRead for Recorder<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut *this.tcp).poll_read(cx, buf);
        this.seen.extend_from_slice(&buf.filled()[before..]);
        r
    }
}

impl AsyncWrite for Recorder<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.tcp).poll_shutdown(cx)
    }
}

/// Send roll-call messages (through the first client's writer) until every connected client
/// has heard one, so that the measurement starts only when the server has everyone in the room
/// (a server may register a connection a moment after its handshake). Gives up after a while:
/// the missing clients then show as lost.
async fn roll_call(room: &Room, caller: &Outbox, progress: &mut Progress) {
    let give_up = room.now_us() + 10_000_000 + u64::from(room.connected) * 2_000;
    while room.joined.load(Ordering::SeqCst) < room.connected && room.now_us() < give_up {
        let stamp = Stamp {
            run: room.run,
            // Any sender: the roll call is not in the schedule.
            sender: 0,
            round: ROLL_CALL,
            sent_us: room.now_us(),
        };
        if caller
            .send(client_text(&room.protocol.message(&stamp)))
            .is_err()
        {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(250), async {
            while room.joined.load(Ordering::SeqCst) < room.connected {
                room.news.notified().await;
            }
        })
        .await;
        let joined = u64::from(room.joined.load(Ordering::SeqCst));
        progress.update(joined, None);
    }
    let joined = room.joined.load(Ordering::SeqCst);
    if joined < room.connected {
        progress.note(format_args!(
            "only {joined} of {} clients heard the roll call; measuring anyway",
            room.connected
        ));
    }
}

/// One client's sends: what its reader or the roll call asks for at once, and its own messages
/// each at its scheduled time, counted from the `start` it is given. Returns its half of the
/// socket to keep it open.
async fn write(
    sender: u32,
    mut sink: OwnedWriteHalf,
    room: Arc<Room>,
    start: oneshot::Receiver<u64>,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
) -> OwnedWriteHalf {
    tokio::pin!(start);
    let t0_us = loop {
        tokio::select! {
            t0 = &mut start => match t0 {
                Ok(t0) => break t0,
                Err(_) => return sink,
            },
            Some(frame) = outgoing.recv() => {
                if sink.write_all(&frame).await.is_err() {
                    return sink;
                }
            }
        }
    };
    for round in 0..room.schedule.rounds {
        let due_us = t0_us + room.schedule.offset_us(sender, round);
        let due = tokio::time::sleep_until(room.at(due_us));
        tokio::pin!(due);
        loop {
            tokio::select! {
                biased;
                _ = &mut due => break,
                Some(frame) = outgoing.recv() => {
                    if sink.write_all(&frame).await.is_err() {
                        return sink;
                    }
                }
            }
        }
        let now = room.now_us();
        room.send_lag_max_us
            .fetch_max(now.saturating_sub(due_us), Ordering::Relaxed);
        let stamp = Stamp {
            run: room.run,
            sender,
            round,
            sent_us: now,
        };
        let frame = client_text(&room.protocol.message(&stamp));
        if sink.write_all(&frame).await.is_err() {
            break;
        }
        room.sent.fetch_add(1, Ordering::SeqCst);
    }
    sink
}

/// One client's deliveries until told to stop: its tally, why the server dropped it if it did,
/// and its half of the socket.
async fn read(
    mut stream: OwnedReadHalf,
    mut inbox: Inbox,
    outbox: Outbox,
    room: Arc<Room>,
    shard: usize,
    mut stop: oneshot::Receiver<()>,
) -> (ClientTally, Option<String>, OwnedReadHalf) {
    let finder = StampFinder::default();
    let mut tally = ClientTally::new(&room.schedule);
    let mut batch: Vec<u64> = Vec::with_capacity(BATCH);
    let mut batch_since = 0;
    let mut joined = false;
    let mut disconnected = None;
    let all = room.schedule.messages();
    let protocol = room.protocol;
    loop {
        // Every frame of one read arrived at once: one clock reading serves them all.
        let now = room.now_us();
        let parsed = inbox.drain(|event| {
            let text = match event {
                Event::Message(text) => text,
                Event::Ping(payload) => {
                    let _ = outbox.send(client_frame(OpCode::Control(Control::Pong), payload));
                    return;
                }
                Event::Close(why) => {
                    disconnected = Some(why);
                    return;
                }
            };
            if let Some(reply) = protocol.keepalive_reply(text) {
                let _ = outbox.send(client_text(reply));
                return;
            }
            if protocol.is_goodbye(text) {
                disconnected = Some(format!(
                    "dropped by the server: {}",
                    String::from_utf8_lossy(text)
                ));
                return;
            }
            let Some(stamp) = finder.find(text).filter(|s| s.run == room.run) else {
                return;
            };
            if stamp.round == ROLL_CALL {
                if !joined {
                    joined = true;
                    if room.joined.fetch_add(1, Ordering::SeqCst) + 1 == room.connected {
                        room.news.notify_one();
                    }
                }
                return;
            }
            let Some(index) = room.schedule.index(stamp.sender, stamp.round) else {
                return;
            };
            let latency = now.saturating_sub(stamp.sent_us);
            if tally.record(index, latency, room.budget_us) {
                if batch.is_empty() {
                    batch_since = now;
                }
                batch.push(latency);
                if batch.len() == BATCH
                    || tally.delivered == all
                    || now.saturating_sub(batch_since) > BATCH_AGE_US
                {
                    flush(&room, shard, &mut batch);
                }
            }
        });
        if let Err(why) = parsed {
            disconnected = Some(why);
        }
        if disconnected.is_some() {
            break;
        }
        let read = tokio::select! {
            biased;
            _ = &mut stop => break,
            read = stream.read_buf(inbox.buffer(READ_SIZE / 4)) => read,
        };
        match read {
            Ok(0) => {
                disconnected = Some("connection ended".into());
                break;
            }
            Ok(_) => {}
            Err(e) => {
                disconnected = Some(e.to_string());
                break;
            }
        }
    }
    flush(&room, shard, &mut batch);
    (tally, disconnected, stream)
}

fn flush(room: &Room, shard: usize, batch: &mut Vec<u64>) {
    if batch.is_empty() {
        return;
    }
    {
        let mut latencies = room.latencies[shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for &l in batch.iter() {
            latencies.record(l);
        }
    }
    room.delivered
        .fetch_add(batch.len() as u64, Ordering::SeqCst);
    batch.clear();
    room.news.notify_one();
}
