//! COMPRESS=DEFLATE (RFC 4978): a stream adapter that inflates what it
//! reads and deflates what it writes, raw DEFLATE (RFC 1951) without a
//! zlib header in both directions.
//!
//! RFC 4978 §4: "the server [...] MUST [...] flush (using Z_SYNC_FLUSH or
//! equivalent) after each response"; here every `poll_flush` (the loop
//! flushes after each batch of answers) ends with a sync flush, so the
//! client can decode everything sent so far.
//!
//! Memory: input is inflated into the caller's buffer, chunk by chunk;
//! compressed output waits in `pending` only until the next flush, and the
//! loop flushes at least every 256 KiB of answers.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Size of one read of compressed input.
const READ_CHUNK: usize = 16 * 1024;

/// A stream with DEFLATE compression in both directions.
pub struct Deflate<S> {
    inner: S,
    inflate: Decompress,
    deflate: Compress,
    /// Compressed input not yet inflated.
    input: Vec<u8>,
    input_pos: usize,
    /// Compressed output not yet written.
    pending: Vec<u8>,
    pending_pos: usize,
    /// Output was deflated since the last sync flush.
    unflushed: bool,
    eof: bool,
}

impl<S> Deflate<S> {
    /// Wraps `inner`; `leftover` is input already read from it (bytes the
    /// client sent right after COMPRESS, already compressed).
    pub fn new(inner: S, leftover: Vec<u8>) -> Deflate<S> {
        Deflate {
            inner,
            inflate: Decompress::new(false),
            deflate: Compress::new(Compression::default(), false),
            input: leftover,
            input_pos: 0,
            pending: Vec::new(),
            pending_pos: 0,
            unflushed: false,
            eof: false,
        }
    }

    /// Deflates `data` (or, empty with `Sync`, flushes) into `pending`.
    fn deflate_into_pending(&mut self, data: &[u8], flush: FlushCompress) -> io::Result<()> {
        let mut consumed = 0;
        loop {
            self.pending.reserve((data.len() - consumed) / 2 + 1024);
            let before_in = self.deflate.total_in();
            let before_out = self.deflate.total_out();
            self.deflate
                .compress_vec(&data[consumed..], &mut self.pending, flush)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            consumed += (self.deflate.total_in() - before_in) as usize;
            let produced = self.deflate.total_out() - before_out;
            let room_left = self.pending.capacity() > self.pending.len();
            if consumed >= data.len() && (room_left || produced == 0) {
                return Ok(());
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Deflate<S> {
    /// Writes `pending` out to the inner stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_pos < self.pending.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_pos..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_pos += n;
        }
        self.pending.clear();
        self.pending_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deflate<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Inflate even when all input was consumed: the inflater may
            // still hold output that did not fit the caller's buffer last
            // time, and it must come out before we wait for the client
            // (who may be waiting for our answer to it).
            let before_in = this.inflate.total_in();
            let before_out = this.inflate.total_out();
            let status = this
                .inflate
                .decompress(
                    &this.input[this.input_pos..],
                    buf.initialize_unfilled(),
                    FlushDecompress::None,
                )
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let consumed = (this.inflate.total_in() - before_in) as usize;
            let produced = (this.inflate.total_out() - before_out) as usize;
            this.input_pos += consumed;
            buf.advance(produced);
            if status == Status::StreamEnd {
                this.eof = true;
            }
            if produced > 0 {
                return Poll::Ready(Ok(()));
            }
            if consumed > 0 {
                continue;
            }
            // Need more compressed input; keep what was not consumed.
            this.input.drain(..this.input_pos);
            this.input_pos = 0;
            let kept = this.input.len();
            this.input.resize(kept + READ_CHUNK, 0);
            let mut raw = ReadBuf::new(&mut this.input[kept..]);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut raw);
            let n = raw.filled().len();
            this.input.truncate(kept + n);
            ready!(polled)?;
            if n == 0 {
                this.eof = true;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deflate<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        this.deflate_into_pending(data, FlushCompress::None)?;
        this.unflushed = true;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.unflushed {
            this.deflate_into_pending(&[], FlushCompress::Sync)?;
            this.unflushed = false;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Found by the imap_compress fuzz target: when one read's worth of
    /// input inflated to more than the caller's buffer, the rest stayed in
    /// the inflater until the client sent more, which it would not do
    /// while waiting for our answer (and at end of input it was lost).
    #[tokio::test]
    async fn output_larger_than_the_read_buffer_is_all_delivered() {
        let text = b"a1 NOOP\r\n".repeat(200);
        let mut c = Compress::new(Compression::default(), false);
        let mut wire = Vec::with_capacity(text.len() + 64);
        c.compress_vec(&text, &mut wire, FlushCompress::Sync)
            .unwrap();
        let mut stream = Deflate::new(&wire[..], Vec::new());
        let mut got = Vec::new();
        let mut buf = [0u8; 17];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, text);
    }
}
