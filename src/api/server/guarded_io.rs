//! The connection's socket as hyper sees it, telling the watchdog what moves and guarding the
//! size of request heads; a request's body, noting when it has been read to its end.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::activity::Activity;
use super::head_scan::{HeadScan, Oversized};

/// The connection's socket, telling [`Activity`] what moves and guarding the size of heads.
pub struct GuardedIo {
    pub(super) inner: TcpStream,
    pub(super) activity: Arc<Activity>,
    pub(super) max_head_bytes: usize,
    pub(super) scan: HeadScan,
    pub(super) oversized: Option<Oversized>,
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.oversized.is_some() {
            return Poll::Ready(Err(io::Error::other("request head too large")));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let read = &buf.filled()[before..];
        if read.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let activity = &this.activity;
        activity.read_some();
        if activity.in_flight.load(Ordering::Relaxed) > 0 {
            return Poll::Ready(Ok(()));
        }
        let generation = activity.answered.load(Ordering::Relaxed);
        if this.scan.generation != generation {
            this.scan = HeadScan::after(generation);
        }
        if activity.heads_checked.load(Ordering::Relaxed) {
            if let Err(what) = this.scan.feed(read, this.max_head_bytes) {
                this.oversized = Some(what);
                return Poll::Ready(Err(io::Error::other("request head too large")));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl GuardedIo {
    /// A write that moved bytes counts as activity for the idle timeout.
    fn note_written(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.wrote_some();
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note_written(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note_written(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request's body as the routes see it: hyper's, noting when it has been read to its end (a
/// body left unread is drained by hyper after the response, and those bytes are no head).
pub struct RequestBody {
    pub(super) inner: Incoming,
    pub(super) done: Arc<AtomicBool>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.done.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
