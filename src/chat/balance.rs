//! Sharing one listening socket fairly between the workers.
//!
//! Every worker waits on the same socket. Left alone, the kernel wakes them all and the first to
//! run takes a whole burst of connections, so one worker can end up with every client: one core
//! busy, the others idle. So the workers keep their open-connection counts in a small table of
//! shared memory ([`Loads`], mapped `MAP_SHARED` by the parent before it forks), and when a
//! connection is waiting, a worker with clearly more connections than the least loaded live
//! worker holds back for a millisecond so a lighter one can take it. It never holds back more than
//! [`MAX_DEFERS`] times in a row: a lighter worker that is stopped or busy must not leave
//! connections waiting.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::runner::warn;

/// A slot whose worker is not running.
const DOWN: u32 = u32::MAX;
/// How long a heavier worker holds back each time, and how many times in a row at most.
const DEFER_STEP: Duration = Duration::from_millis(1);
pub const MAX_DEFERS: u32 = 4;

/// Open connections per worker slot, in memory shared by the parent and every worker.
pub struct Loads {
    table: NonNull<AtomicU32>,
    len: usize,
}

// SAFETY: the table is only ever accessed through atomics, and the mapping lives as long as the
// process (it is never unmapped).
unsafe impl Send for Loads {}
unsafe impl Sync for Loads {}

impl Loads {
    /// A table for `workers` slots, all down. Call before forking so every worker shares it.
    pub fn new(workers: usize) -> Result<Loads> {
        let bytes = NonZeroUsize::new(workers.max(1) * std::mem::size_of::<AtomicU32>())
            .expect("at least one slot");
        // SAFETY: a fresh anonymous mapping, aliased by nothing else in this process.
        let table = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(|e| Error::io("mapping shared memory for worker loads", e.into()))?;
        let loads = Loads {
            table: table.cast(),
            len: workers.max(1),
        };
        for slot in 0..loads.len {
            loads.slot(slot).store(DOWN, Ordering::Relaxed);
        }
        Ok(loads)
    }

    fn slot(&self, slot: usize) -> &AtomicU32 {
        assert!(slot < self.len, "worker slot {slot} out of range");
        // SAFETY: in bounds, zero-initialised by mmap, aligned (page-aligned base), and
        // AtomicU32 has the layout of u32.
        unsafe { &*self.table.as_ptr().add(slot) }
    }

    /// A worker starts in `slot` with no connections.
    pub fn up(&self, slot: usize) {
        self.slot(slot).store(0, Ordering::Relaxed);
    }

    /// The worker in `slot` has ended (the parent reaped it).
    pub fn down(&self, slot: usize) {
        self.slot(slot).store(DOWN, Ordering::Relaxed);
    }

    pub fn get(&self, slot: usize) -> Option<u32> {
        match self.slot(slot).load(Ordering::Relaxed) {
            DOWN => None,
            n => Some(n),
        }
    }

    fn opened(&self, slot: usize) {
        self.slot(slot).fetch_add(1, Ordering::Relaxed);
    }

    fn closed(&self, slot: usize) {
        self.slot(slot).fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether the worker in `slot` should let a lighter one take the next connection.
    pub fn should_defer(&self, slot: usize) -> bool {
        let Some(mine) = self.get(slot) else {
            return false;
        };
        let least = (0..self.len)
            .filter(|&s| s != slot)
            .filter_map(|s| self.get(s))
            .min();
        least.is_some_and(|least| should_defer(mine, least))
    }
}

/// The rule itself: hold back when ahead of the least loaded by more than a small margin (two
/// connections, or 2 % of its count, whichever is more).
pub fn should_defer(mine: u32, least: u32) -> bool {
    mine > least + 2 + least / 50
}

/// The worker's listener: accepts from the shared socket, deferring to lighter workers, and
/// counts each connection in [`Loads`] until it closes.
pub struct BalancedListener {
    socket: AsyncFd<StdListener>,
    local: SocketAddr,
    loads: Arc<Loads>,
    slot: usize,
}

impl BalancedListener {
    pub fn new(listener: StdListener, loads: Arc<Loads>, slot: usize) -> Result<Self> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("reading the listener's address", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("setting the listener non-blocking", e))?;
        // SAFETY: the std listener owns its descriptor, and the AsyncFd owns the listener for
        // the rest of its life.
        let socket =
            unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) }
                .map_err(|e| Error::io("registering the listener", e.into()))?;
        loads.up(slot);
        Ok(BalancedListener {
            socket,
            local,
            loads,
            slot,
        })
    }
}

impl axum::serve::Listener for BalancedListener {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        let mut deferred = 0;
        loop {
            let mut ready = match self.socket.readable().await {
                Ok(ready) => ready,
                Err(e) => {
                    warn(format_args!("worker {}: waiting to accept: {e}", self.slot));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if deferred < MAX_DEFERS && self.loads.should_defer(self.slot) {
                deferred += 1;
                drop(ready);
                tokio::time::sleep(DEFER_STEP).await;
                continue;
            }
            match ready.try_io(|socket| socket.get_ref().accept()) {
                Ok(Ok((stream, peer))) => {
                    let Ok(stream) = tokio_stream(stream) else {
                        continue;
                    };
                    self.loads.opened(self.slot);
                    let counted = Counted {
                        stream,
                        loads: self.loads.clone(),
                        slot: self.slot,
                    };
                    return (counted, peer);
                }
                Ok(Err(e)) if is_connection_error(&e) => continue,
                Ok(Err(e)) => {
                    // Out of file descriptors and the like: say so, and let things settle.
                    warn(format_args!("worker {}: accept: {e}", self.slot));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                // Another worker took it.
                Err(_would_block) => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

fn tokio_stream(stream: std::net::TcpStream) -> io::Result<TcpStream> {
    stream.set_nonblocking(true)?;
    // Chat frames are small and already coalesced per write: send them at once.
    stream.set_nodelay(true)?;
    TcpStream::from_std(stream)
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// An accepted connection, counted in [`Loads`] until it is dropped.
pub struct Counted {
    stream: TcpStream,
    loads: Arc<Loads>,
    slot: usize,
}

impl std::os::fd::AsFd for Counted {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.loads.closed(self.slot);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_defers_only_when_clearly_ahead() {
        assert!(!should_defer(0, 0));
        assert!(!should_defer(2, 0));
        assert!(should_defer(3, 0));
        assert!(!should_defer(1002, 1000)); // within 2 + 2 %
        assert!(!should_defer(1022, 1000));
        assert!(should_defer(1023, 1000));
    }

    #[test]
    fn loads_ignore_workers_that_are_down() {
        let loads = Loads::new(3).unwrap();
        loads.up(0);
        for _ in 0..10 {
            loads.opened(0);
        }
        // Nobody else is up: nobody to defer to.
        assert!(!loads.should_defer(0));
        loads.up(2);
        assert!(loads.should_defer(0));
        assert!(!loads.should_defer(2));
        loads.down(2);
        assert!(!loads.should_defer(0));
        assert_eq!(loads.get(2), None);
        assert_eq!(loads.get(0), Some(10));
    }
}
