//! Client connections whose HTTP/2 `:authority` carries a URL scheme, made acceptable to
//! tonic's HTTP/2 server.
//!
//! etcdctl 3.4 (grpc-go) dials a single endpoint given as `http://host:port` with that
//! whole URL as `:authority`. etcd (Go's HTTP/2 server) accepts it; Rust's h2 resets the
//! stream as malformed (hyperium/h2#525). [`Authority`] sits between the socket and tonic
//! and reads the client's bytes: a connection that is not HTTP/2, or whose first header
//! block names a plain `host:port`, passes through untouched from then on (every other
//! client: grpc-go and tonic keep one authority per connection). A connection whose first
//! `:authority` has a scheme gets every header block decoded and re-encoded with the
//! scheme removed, for its whole life. The server's bytes to the client are never touched.
//!
//! The price for a plain connection is one header block decoded when it opens: loona-hpack
//! builds its Huffman table for each Huffman-coded string, about 1.5M instructions per
//! connection; requests after that cost nothing extra.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use loona_hpack::{encoder::encode_integer_into, Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an HTTP/2 client sends first (RFC 9113, 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// SETTINGS_MAX_FRAME_SIZE as tonic's server leaves it (the protocol default): re-encoded
/// blocks are split into frames no larger.
const MAX_FRAME: usize = 16_384;
/// SETTINGS_HEADER_TABLE_SIZE as tonic's server leaves it: a client may not grow its
/// dynamic table beyond it.
const HEADER_TABLE: usize = 4_096;
/// The largest header block, compressed or decoded, before the connection is closed.
pub(crate) const MAX_BLOCK: usize = 1 << 20;

/// A malformed or oversized client stream: the connection is closed.
#[derive(Debug, thiserror::Error)]
#[error("http2 client stream: {0}")]
pub(crate) struct Malformed(&'static str);

impl From<Malformed> for io::Error {
    fn from(e: Malformed) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Matching the HTTP/2 preface.
    Preface,
    /// HTTP/2, before the end of the first header block.
    Deciding,
    /// The first `:authority` had a scheme: every header block is re-encoded.
    Rewriting,
    /// Bytes are forwarded as they come.
    PassThrough,
}

/// Decoded headers, names and values, in order.
type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

/// A header block being gathered from a HEADERS frame and its CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    fragment: Vec<u8>,
    /// The frames as received, forwarded unchanged if the connection needs no rewriting.
    raw: Vec<u8>,
}

/// The client-to-server half of a connection as a pure byte transformer: bytes in,
/// bytes out, in the order received.
pub(crate) struct Rewriter {
    mode: Mode,
    /// A partial preface, or the current frame's header (and, for a header frame, its
    /// payload) until complete.
    held: Vec<u8>,
    /// Payload bytes of the current frame (not a header frame) still to copy through.
    copy: usize,
    block: Option<Block>,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

impl Default for Rewriter {
    fn default() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE);
        let mut encoder = Encoder::new();
        encoder.set_max_table_size(0);
        Rewriter {
            mode: Mode::Preface,
            held: Vec::new(),
            copy: 0,
            block: None,
            decoder,
            encoder,
        }
    }
}

impl Rewriter {
    /// Whether every later byte is forwarded unchanged.
    pub(crate) fn passing_through(&self) -> bool {
        self.mode == Mode::PassThrough
    }

    /// Consumes `input`, appending what the server should read to `out`.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
        while !input.is_empty() {
            match self.mode {
                Mode::PassThrough => {
                    out.extend_from_slice(input);
                    return Ok(());
                }
                Mode::Preface => {
                    let take = (PREFACE.len() - self.held.len()).min(input.len());
                    self.held.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if !PREFACE.starts_with(&self.held) {
                        out.append(&mut self.held);
                        self.mode = Mode::PassThrough;
                    } else if self.held.len() == PREFACE.len() {
                        out.append(&mut self.held);
                        self.mode = Mode::Deciding;
                    }
                }
                Mode::Deciding | Mode::Rewriting if self.copy > 0 => {
                    let n = self.copy.min(input.len());
                    out.extend_from_slice(&input[..n]);
                    self.copy -= n;
                    input = &input[n..];
                }
                Mode::Deciding | Mode::Rewriting => {
                    input = self.frame(input, out)?;
                }
            }
        }
        Ok(())
    }

    /// Takes bytes of the next frame from `input`; returns the rest.
    fn frame<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> Result<&'a [u8], Malformed> {
        let mut input = input;
        if self.held.len() < FRAME_HEADER {
            let take = (FRAME_HEADER - self.held.len()).min(input.len());
            self.held.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.held.len() < FRAME_HEADER {
                return Ok(input);
            }
        }
        let h = &self.held;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let kind = h[3];
        if kind != HEADERS && kind != CONTINUATION {
            if self.block.is_some() {
                return Err(Malformed("a header block interrupted by another frame"));
            }
            out.append(&mut self.held);
            self.copy = len;
            return Ok(input);
        }
        let gathered = self.block.as_ref().map_or(0, |b| b.fragment.len());
        if gathered + len > MAX_BLOCK {
            return Err(Malformed("header block too large"));
        }
        let take = (FRAME_HEADER + len - self.held.len()).min(input.len());
        self.held.extend_from_slice(&input[..take]);
        if self.held.len() == FRAME_HEADER + len {
            let frame = std::mem::take(&mut self.held);
            self.header_frame(&frame, out)?;
        }
        Ok(&input[take..])
    }

    /// A complete HEADERS or CONTINUATION frame.
    fn header_frame(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        let keep_raw = self.mode == Mode::Deciding;
        let block = match (kind, self.block.as_mut()) {
            (HEADERS, None) => self.block.insert(Block {
                stream,
                end_stream: flags & END_STREAM != 0,
                fragment: Vec::new(),
                raw: Vec::new(),
            }),
            (CONTINUATION, Some(b)) if b.stream == stream => b,
            (HEADERS, Some(_)) => return Err(Malformed("HEADERS inside a header block")),
            _ => return Err(Malformed("CONTINUATION outside its header block")),
        };
        let fragment = if kind == HEADERS {
            headers_fragment(flags, payload)?
        } else {
            payload
        };
        block.fragment.extend_from_slice(fragment);
        if keep_raw {
            block.raw.extend_from_slice(frame);
        }
        if flags & END_HEADERS != 0 {
            let block = self.block.take().expect("gathered above");
            self.end_block(block, out)?;
        }
        Ok(())
    }

    /// A complete header block: decided on (the first), re-encoded, or forwarded.
    fn end_block(&mut self, block: Block, out: &mut Vec<u8>) -> Result<(), Malformed> {
        let headers = self.decode(&block.fragment)?;
        let mut encoded = Vec::new();
        if self.mode == Mode::Deciding {
            let scheme = headers
                .iter()
                .any(|(name, value)| name == b":authority" && find(value, b"://").is_some());
            if !scheme {
                out.extend_from_slice(&block.raw);
                self.mode = Mode::PassThrough;
                return Ok(());
            }
            self.mode = Mode::Rewriting;
            // The server's table may hold nothing this encoder could refer to.
            encode_integer_into(0, 5, 0x20, &mut encoded).expect("writes to a Vec");
        }
        for (name, value) in &headers {
            let value = if name == b":authority" {
                strip_scheme(value)
            } else {
                value
            };
            self.encoder
                .encode_header_into((name, value), &mut encoded)
                .expect("writes to a Vec");
        }
        if encoded.len() > MAX_BLOCK {
            return Err(Malformed("header block too large"));
        }
        write_block(block.stream, block.end_stream, &encoded, out);
        Ok(())
    }

    /// Decodes a header block, keeping the decoder's table in step with the client's
    /// encoder; refuses a block that decodes to more than [`MAX_BLOCK`] bytes.
    fn decode(&mut self, fragment: &[u8]) -> Result<HeaderList, Malformed> {
        let mut headers = Vec::new();
        // Counted as HPACK counts a header list's size (RFC 7541, 4.1).
        let mut size = 0usize;
        self.decoder
            .decode_with_cb(fragment, |name, value| {
                size = size.saturating_add(name.len() + value.len() + 32);
                if size <= MAX_BLOCK {
                    headers.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|_| Malformed("undecodable header block"))?;
        if size > MAX_BLOCK {
            return Err(Malformed("header list too large"));
        }
        Ok(headers)
    }
}

/// The header block fragment of a HEADERS frame's payload: without padding and priority.
fn headers_fragment(flags: u8, payload: &[u8]) -> Result<&[u8], Malformed> {
    let mut fragment = payload;
    let mut padding = 0;
    if flags & PADDED != 0 {
        let (&pad, rest) = fragment
            .split_first()
            .ok_or(Malformed("PADDED HEADERS without a pad length"))?;
        padding = usize::from(pad);
        fragment = rest;
    }
    if flags & PRIORITY != 0 {
        fragment = fragment
            .get(5..)
            .ok_or(Malformed("PRIORITY HEADERS too short"))?;
    }
    let end = fragment
        .len()
        .checked_sub(padding)
        .ok_or(Malformed("padding longer than the HEADERS payload"))?;
    Ok(&fragment[..end])
}

/// `block` as a HEADERS frame, followed by CONTINUATION frames if it is longer than one
/// frame may be.
fn write_block(stream: u32, end_stream: bool, block: &[u8], out: &mut Vec<u8>) {
    let mut chunks = block.chunks(MAX_FRAME).peekable();
    let (mut kind, mut flags) = (HEADERS, if end_stream { END_STREAM } else { 0 });
    loop {
        let chunk = chunks.next().unwrap_or_default();
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        let len = u32::try_from(chunk.len()).expect("frames are at most MAX_FRAME");
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(chunk);
        if flags & END_HEADERS != 0 {
            return;
        }
        (kind, flags) = (CONTINUATION, 0);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `http://host:port/...` as `host:port`; an authority without a scheme unchanged.
fn strip_scheme(authority: &[u8]) -> &[u8] {
    let Some(at) = find(authority, b"://") else {
        return authority;
    };
    let rest = &authority[at + 3..];
    let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    &rest[..end]
}

/// A client connection whose bytes to the server go through a [`Rewriter`] until it
/// decides the connection needs none.
pub struct Authority<IO> {
    io: IO,
    /// `None` once the connection passes through.
    rewriter: Option<Box<Rewriter>>,
    /// Rewritten bytes not yet read by the server.
    pending: Vec<u8>,
    pending_at: usize,
}

impl<IO> Authority<IO> {
    pub fn new(io: IO) -> Self {
        Authority {
            io,
            rewriter: Some(Box::default()),
            pending: Vec::new(),
            pending_at: 0,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Authority<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pending_at < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.pending_at);
                buf.put_slice(&this.pending[this.pending_at..this.pending_at + n]);
                this.pending_at += n;
                if this.pending_at == this.pending.len() {
                    this.pending.clear();
                    this.pending_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let Some(rewriter) = this.rewriter.as_mut() else {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            };
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            rewriter.feed(read.filled(), &mut this.pending)?;
            if rewriter.passing_through() {
                this.rewriter = None;
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Authority<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected
    for Authority<IO>
{
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
