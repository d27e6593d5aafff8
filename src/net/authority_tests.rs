use loona_hpack::{Decoder, Encoder};
use proptest::prelude::*;

use super::*;

const DATA: u8 = 0x0;
const SETTINGS: u8 = 0x4;

type Headers = HeaderList;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(payload.len()).unwrap().to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A gRPC request's headers as grpc-go sends them, with `authority`.
fn request(authority: &str, path: &str) -> Headers {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("user-agent", "grpc-go/1.26.0"),
        ("te", "trailers"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect()
}

/// `headers` as the client's encoder (with its dynamic table) would compress them.
fn encode(client: &mut Encoder, headers: &Headers) -> Vec<u8> {
    client.encode(headers.iter().map(|(n, v)| (&n[..], &v[..])))
}

/// The client's bytes: the preface, SETTINGS, then `frames`.
fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
    for f in frames {
        bytes.extend_from_slice(f);
    }
    bytes
}

/// What the server reads when the client's bytes arrive in pieces of `piece` bytes.
fn rewrite(bytes: &[u8], piece: usize) -> Result<(Vec<u8>, bool), Malformed> {
    let mut rewriter = Rewriter::default();
    let mut out = Vec::new();
    for chunk in bytes.chunks(piece) {
        rewriter.feed(chunk, &mut out)?;
    }
    Ok((out, rewriter.passing_through()))
}

/// The same output whether bytes arrive whole, one at a time, or in odd pieces.
fn rewrite_any_split(bytes: &[u8]) -> (Vec<u8>, bool) {
    let whole = rewrite(bytes, bytes.len()).unwrap();
    for piece in [1, 7, 4096] {
        assert_eq!(rewrite(bytes, piece).unwrap(), whole, "pieces of {piece}");
    }
    whole
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The frames the server reads after the preface.
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut rest = bytes.strip_prefix(PREFACE).expect("the preface first");
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        frames.push(Frame {
            kind: rest[3],
            flags: rest[4],
            stream: u32::from_be_bytes(rest[5..9].try_into().unwrap()),
            payload: rest[9..9 + len].to_vec(),
        });
        rest = &rest[9 + len..];
    }
    frames
}

/// The header blocks the server reads, decoded by one decoder as h2's would be, each
/// with its stream and whether it ends the stream.
fn server_blocks(bytes: &[u8]) -> Vec<(u32, bool, Headers)> {
    let mut server = Decoder::new();
    let mut blocks = Vec::new();
    let mut open: Option<(u32, bool, Vec<u8>)> = None;
    for f in frames(bytes) {
        if matches!(f.kind, HEADERS | CONTINUATION) {
            assert!(f.payload.len() <= MAX_FRAME);
        }
        match f.kind {
            HEADERS => {
                assert!(open.is_none());
                assert_eq!(f.flags & (PADDED | PRIORITY), 0);
                open = Some((f.stream, f.flags & END_STREAM != 0, f.payload));
            }
            CONTINUATION => {
                let block = open.as_mut().expect("CONTINUATION after HEADERS");
                assert_eq!(block.0, f.stream);
                assert_eq!(f.flags & END_STREAM, 0);
                block.2.extend(f.payload);
            }
            _ => assert!(open.is_none(), "a frame inside a header block"),
        }
        if matches!(f.kind, HEADERS | CONTINUATION) && f.flags & END_HEADERS != 0 {
            let (stream, end, block) = open.take().unwrap();
            blocks.push((stream, end, server.decode(&block).unwrap()));
        }
    }
    assert!(open.is_none());
    blocks
}

#[test]
fn http1_passes_through_untouched() {
    let bytes = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1:2379\r\n\r\n";
    assert_eq!(rewrite_any_split(bytes), (bytes.to_vec(), true));
    // Starts like the preface, then is not it.
    let bytes = b"PRI * HTTP/1.1\r\n\r\n";
    assert_eq!(rewrite_any_split(bytes), (bytes.to_vec(), true));
}

#[test]
fn plain_authority_is_forwarded_byte_identical_then_passed_through() {
    let mut client = Encoder::new();
    let first = encode(
        &mut client,
        &request("127.0.0.1:2379", "/etcdserverpb.KV/Put"),
    );
    let second = encode(
        &mut client,
        &request("127.0.0.1:2379", "/etcdserverpb.KV/Range"),
    );
    let bytes = connection(&[
        frame(HEADERS, END_HEADERS, 1, &first),
        frame(DATA, END_STREAM, 1, b"\0\0\0\0\x02ab"),
        // After the decision anything goes through, even what is not HTTP/2.
        frame(HEADERS, END_HEADERS, 3, &second),
        b"not a frame".to_vec(),
    ]);
    assert_eq!(rewrite_any_split(&bytes), (bytes.clone(), true));
}

#[test]
fn no_authority_at_all_passes_through() {
    let mut client = Encoder::new();
    let headers = vec![(b":method".to_vec(), b"GET".to_vec())];
    let bytes = connection(&[frame(
        HEADERS,
        END_HEADERS,
        1,
        &encode(&mut client, &headers),
    )]);
    assert_eq!(rewrite_any_split(&bytes), (bytes.clone(), true));
}

#[test]
fn scheme_is_stripped_from_every_header_block() {
    let mut client = Encoder::new();
    let put = request("http://127.0.0.1:2379", "/etcdserverpb.KV/Put");
    let status = request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status");
    let body = b"\0\0\0\0\x02ab".to_vec();
    let bytes = connection(&[
        frame(HEADERS, END_HEADERS, 1, &encode(&mut client, &put)),
        frame(DATA, END_STREAM, 1, &body),
        // The client's encoder now refers to its dynamic table.
        frame(HEADERS, END_HEADERS, 3, &encode(&mut client, &status)),
        frame(DATA, END_STREAM, 3, &body),
    ]);
    let (out, passing) = rewrite_any_split(&bytes);
    assert!(!passing);
    let plain = |headers: &Headers| {
        let mut h = headers.clone();
        h[3].1 = b"127.0.0.1:2379".to_vec();
        h
    };
    assert_eq!(
        server_blocks(&out),
        vec![(1, false, plain(&put)), (3, false, plain(&status))]
    );
    let data: Vec<(u32, u8, Vec<u8>)> = frames(&out)
        .into_iter()
        .filter(|f| f.kind != HEADERS)
        .map(|f| (f.stream, f.flags, f.payload))
        .collect();
    assert_eq!(
        data,
        vec![
            (0, 0, vec![0, 3, 0, 0, 0, 100]),
            (1, END_STREAM, body.clone()),
            (3, END_STREAM, body)
        ]
    );
}

#[test]
fn strip_scheme_keeps_host_and_port_only() {
    assert_eq!(strip_scheme(b"http://127.0.0.1:2379"), b"127.0.0.1:2379");
    assert_eq!(strip_scheme(b"https://[::1]:2379/"), b"[::1]:2379");
    assert_eq!(strip_scheme(b"unix://sock"), b"sock");
    assert_eq!(strip_scheme(b"127.0.0.1:2379"), b"127.0.0.1:2379");
}

/// The headers of a connection whose first block has a scheme and arrives as `split`
/// frames, with END_STREAM.
fn decoded_when_split(split: impl Fn(&[u8]) -> Vec<Vec<u8>>) -> Vec<(u32, bool, Headers)> {
    let mut client = Encoder::new();
    let block = encode(&mut client, &request("http://localhost:2379", "/x"));
    let bytes = connection(&split(&block));
    let (out, passing) = rewrite_any_split(&bytes);
    assert!(!passing);
    server_blocks(&out)
}

#[test]
fn continuation_padding_and_priority_are_gathered() {
    let expected = vec![(5, true, request("localhost:2379", "/x"))];
    let whole = decoded_when_split(|b| vec![frame(HEADERS, END_STREAM | END_HEADERS, 5, b)]);
    assert_eq!(whole, expected);
    let continued = decoded_when_split(|b| {
        vec![
            frame(HEADERS, END_STREAM, 5, &b[..3]),
            frame(CONTINUATION, 0, 5, &b[3..10]),
            frame(CONTINUATION, 0, 5, &[]),
            frame(CONTINUATION, END_HEADERS, 5, &b[10..]),
        ]
    });
    assert_eq!(continued, expected);
    let padded = decoded_when_split(|b| {
        let mut payload = vec![4];
        payload.extend_from_slice(&[0x80, 0, 0, 3, 200]);
        payload.extend_from_slice(b);
        payload.extend_from_slice(&[0; 4]);
        vec![frame(
            HEADERS,
            END_STREAM | END_HEADERS | PADDED | PRIORITY,
            5,
            &payload,
        )]
    });
    assert_eq!(padded, expected);
}

#[test]
fn a_large_block_is_split_into_continuation_frames() {
    let mut headers = request("http://127.0.0.1:2379", "/x");
    headers.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
    let mut client = Encoder::new();
    let block = encode(&mut client, &headers);
    let bytes = connection(&[
        frame(HEADERS, END_STREAM, 1, &block[..16_000]),
        frame(CONTINUATION, END_HEADERS, 1, &block[16_000..]),
    ]);
    let (out, _) = rewrite_any_split(&bytes);
    let kinds: Vec<(u8, u8)> = frames(&out)
        .iter()
        .skip(1)
        .map(|f| (f.kind, f.flags))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (HEADERS, END_STREAM),
            (CONTINUATION, 0),
            (CONTINUATION, END_HEADERS)
        ]
    );
    headers[3].1 = b"127.0.0.1:2379".to_vec();
    assert_eq!(server_blocks(&out), vec![(1, true, headers)]);
}

#[test]
fn a_client_table_size_update_is_followed_not_forwarded() {
    let mut client = Encoder::new();
    let mut block = Vec::new();
    // A dynamic table size update to 100 bytes (RFC 7541, 6.3), then the headers.
    encode_integer_into(100, 5, 0x20, &mut block).unwrap();
    client.set_max_table_size(100);
    block.extend(encode(&mut client, &request("http://h:1", "/x")));
    let bytes = connection(&[frame(HEADERS, END_HEADERS, 1, &block)]);
    let (out, _) = rewrite_any_split(&bytes);
    assert_eq!(server_blocks(&out), vec![(1, false, request("h:1", "/x"))]);
}

/// The first error feeding `bytes` (after the preface and SETTINGS) gives.
fn refused(frames: &[Vec<u8>]) -> &'static str {
    let bytes = connection(frames);
    for piece in [1, bytes.len()] {
        assert!(rewrite(&bytes, piece).is_err(), "pieces of {piece}");
    }
    rewrite(&bytes, bytes.len()).unwrap_err().0
}

#[test]
fn malformed_streams_are_errors() {
    let mut client = Encoder::new();
    let block = encode(&mut client, &request("http://h:1", "/x"));
    assert_eq!(
        refused(&[frame(CONTINUATION, END_HEADERS, 1, &block)]),
        "CONTINUATION outside its header block"
    );
    assert_eq!(
        refused(&[
            frame(HEADERS, 0, 1, &block[..4]),
            frame(CONTINUATION, END_HEADERS, 3, &block[4..])
        ]),
        "CONTINUATION outside its header block"
    );
    assert_eq!(
        refused(&[frame(HEADERS, 0, 1, &block[..4]), frame(DATA, 0, 1, b"x")]),
        "a header block interrupted by another frame"
    );
    assert_eq!(
        refused(&[
            frame(HEADERS, 0, 1, &block[..4]),
            frame(HEADERS, END_HEADERS, 3, &block)
        ]),
        "HEADERS inside a header block"
    );
    assert_eq!(
        refused(&[frame(HEADERS, END_HEADERS | PADDED, 1, &[])]),
        "PADDED HEADERS without a pad length"
    );
    assert_eq!(
        refused(&[frame(HEADERS, END_HEADERS | PADDED, 1, &[5, 0x82])]),
        "padding longer than the HEADERS payload"
    );
    assert_eq!(
        refused(&[frame(HEADERS, END_HEADERS | PRIORITY, 1, &[0, 0])]),
        "PRIORITY HEADERS too short"
    );
    // Index 70 is past the static table and the (empty) dynamic table.
    assert_eq!(
        refused(&[frame(HEADERS, END_HEADERS, 1, &[0x80 | 70])]),
        "undecodable header block"
    );
    // A table size update beyond the server's SETTINGS_HEADER_TABLE_SIZE.
    let mut grow = Vec::new();
    encode_integer_into(65_536, 5, 0x20, &mut grow).unwrap();
    grow.push(0x82);
    assert_eq!(
        refused(&[frame(HEADERS, END_HEADERS, 1, &grow)]),
        "undecodable header block"
    );
}

#[test]
fn oversized_blocks_are_errors() {
    // A frame header announcing more than MAX_BLOCK: refused before its payload arrives.
    let mut rewriter = Rewriter::default();
    let mut out = Vec::new();
    let header = frame(HEADERS, 0, 1, &[]);
    let mut bytes = connection(&[]);
    bytes.extend_from_slice(&[0x10, 0, 1]);
    bytes.extend_from_slice(&header[3..]);
    assert!(rewriter.feed(&bytes, &mut out).is_err());
    // CONTINUATION frames adding up to more than MAX_BLOCK.
    let piece = vec![0x82; 16_384];
    let mut frames = vec![frame(HEADERS, 0, 1, &piece)];
    frames.extend((0..MAX_BLOCK / piece.len()).map(|_| frame(CONTINUATION, 0, 1, &piece)));
    assert_eq!(refused(&frames), "header block too large");
    // A small block that decodes to more than MAX_BLOCK through the dynamic table: one
    // 4000-byte entry, then 300 references to it.
    let mut client = Encoder::new();
    let entry = (b"x-big".to_vec(), vec![b'v'; 4_000]);
    let mut block = encode(&mut client, &vec![entry.clone()]);
    for _ in 0..300 {
        block.extend(encode(&mut client, &vec![entry.clone()]));
    }
    assert!(block.len() < 10_000);
    assert_eq!(
        refused(&[frame(HEADERS, END_HEADERS, 1, &block)]),
        "header list too large"
    );
}

proptest! {
    /// Whatever follows the preface, the rewriter answers with bytes or an error.
    #[test]
    fn arbitrary_frames_never_panic(
        frames in proptest::collection::vec(
            (0u8..12, any::<u8>(), 0u32..4, proptest::collection::vec(any::<u8>(), 0..40)),
            0..8,
        ),
        piece in 1usize..64,
    ) {
        let frames: Vec<Vec<u8>> = frames
            .iter()
            .map(|(kind, flags, stream, payload)| frame(*kind, *flags, *stream, payload))
            .collect();
        let _ = rewrite(&connection(&frames), piece);
    }

    /// Arbitrary header block bytes after a first block with a scheme: decoded and
    /// re-encoded, or refused.
    #[test]
    fn arbitrary_header_blocks_never_panic(block in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut client = Encoder::new();
        let first = encode(&mut client, &request("http://h:1", "/x"));
        let _ = rewrite(&connection(&[
            frame(HEADERS, END_HEADERS, 1, &first),
            frame(HEADERS, END_HEADERS, 3, &block),
        ]), 5);
    }
}
