//! DATA and BDAT receivers: dot-unstuffing, smuggling sequences, limits,
//! and identical results whatever the input is split.

use mailgate_smtp_proto::*;

/// Feeds `parts` in order; returns the bytes consumed in total, whether
/// the data completed, and the message.
fn feed_parts(limits: DataLimits, parts: &[&[u8]]) -> (usize, bool, ReceivedMessage) {
    let mut rx = DataReceiver::new(limits);
    let mut consumed = 0;
    let mut complete = false;
    for part in parts {
        if complete {
            break;
        }
        let (n, status) = rx.ingest(part);
        consumed += n;
        complete = status == DataStatus::Complete;
        if !complete {
            assert_eq!(n, part.len(), "NeedMore must consume everything");
        }
    }
    assert_eq!(complete, rx.is_complete());
    (consumed, complete, rx.finish())
}

/// Runs `input` whole, split at every position, split at every pair of
/// positions (short inputs) and byte by byte; all must agree.
fn receive(limits: DataLimits, input: &[u8]) -> (usize, bool, ReceivedMessage) {
    let whole = feed_parts(limits, &[input]);
    for k in 0..=input.len() {
        assert_eq!(
            feed_parts(limits, &[&input[..k], &input[k..]]),
            whole,
            "split at {k}"
        );
    }
    if input.len() <= 64 {
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let parts = [&input[..a], &input[a..b], &input[b..]];
                assert_eq!(feed_parts(limits, &parts), whole, "split at {a},{b}");
            }
        }
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(feed_parts(limits, &bytes), whole, "byte by byte");
    whole
}

fn default_receive(input: &[u8]) -> (usize, bool, ReceivedMessage) {
    receive(DataLimits::default(), input)
}

#[test]
fn plain_message_and_leftover() {
    let input = b"Subject: hi\r\n\r\nHello\r\n.\r\nQUIT\r\n";
    let (n, done, msg) = default_receive(input);
    assert!(done);
    assert_eq!(&input[n..], b"QUIT\r\n");
    assert_eq!(msg.data, b"Subject: hi\r\n\r\nHello\r\n");
    assert_eq!(msg.size, msg.data.len() as u64);
    assert!(msg.is_clean());
}

#[test]
fn empty_message() {
    let (n, done, msg) = default_receive(b".\r\nNOOP\r\n");
    assert!(done);
    assert_eq!(n, 3);
    assert!(msg.data.is_empty());
    assert!(msg.is_clean());
}

#[test]
fn incomplete_is_need_more() {
    for input in [
        &b""[..],
        b"abc",
        b"abc\r\n",
        b"abc\r\n.",
        b"abc\r\n.\r",
        b"\r\n.\r",
    ] {
        let (n, done, _) = default_receive(input);
        assert!(!done, "{input:?}");
        assert_eq!(n, input.len());
    }
}

#[test]
fn dot_unstuffing() {
    let (_, done, msg) = default_receive(b"..\r\n..hidden\r\n.x\r\na.b\r\n...\r\n.\r\n");
    assert!(done);
    assert_eq!(msg.data, b".\r\n.hidden\r\nx\r\na.b\r\n..\r\n");
    assert!(msg.is_clean());
    // A first line starting with a dot is unstuffed too.
    let (_, _, msg) = default_receive(b".From\r\n.\r\n");
    assert_eq!(msg.data, b"From\r\n");
}

#[test]
fn smuggling_sequences_never_end_the_data() {
    let sequences: [&[u8]; 5] = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r.\r\n"];
    for seq in sequences {
        let mut input = b"From: a@example.org\r\n\r\nfirst".to_vec();
        input.extend_from_slice(seq);
        input.extend_from_slice(
            b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n",
        );
        input.extend_from_slice(b"smuggled\r\n.\r\nNEXT");
        let (n, done, msg) = default_receive(&input);
        assert!(done, "{seq:?}");
        assert_eq!(&input[n..], b"NEXT", "{seq:?}: ended early");
        assert!(
            msg.bare_line_ending,
            "{seq:?}: bare line ending not flagged"
        );
        assert!(!msg.is_clean());
        let text = String::from_utf8_lossy(&msg.data);
        assert!(
            text.contains("MAIL FROM:<evil@example.org>") && text.ends_with("smuggled\r\n"),
            "{seq:?}"
        );
    }
}

#[test]
fn bare_line_endings_anywhere() {
    for input in [
        &b"a\nb\r\n.\r\n"[..],
        b"a\rb\r\n.\r\n",
        b"\n.\r\n.\r\n",
        b"\r\r\n.\r\n",
        b"a\r\n\r\r\n.\r\n",
        b"x\n\r\n.\r\n",
    ] {
        let (n, done, msg) = default_receive(input);
        assert!(done && n == input.len(), "{input:?}");
        assert!(msg.bare_line_ending, "{input:?}");
    }
    // `<CRLF>.<CR>` followed by something else: a bare CR, data goes on.
    let (_, done, msg) = default_receive(b"a\r\n.\rb\r\n.\r\n");
    assert!(done && msg.bare_line_ending);
    assert_eq!(msg.data, b"a\r\n\rb\r\n");
    // Only CRLF: clean.
    let (_, _, msg) = default_receive(b"a\r\n\r\nb\r\n.\r\n");
    assert!(msg.is_clean());
}

#[test]
fn size_limit() {
    let limits = DataLimits {
        max_message_size: 10,
        ..DataLimits::default()
    };
    let (_, done, msg) = receive(limits, b"12345678\r\n.\r\n");
    assert!(done && msg.is_clean() && msg.data.len() == 10);
    let (n, done, msg) = receive(limits, b"123456789\r\nmore\r\n.\r\nQUIT\r\n");
    assert!(done && msg.too_large && !msg.bare_line_ending);
    assert!(msg.data.is_empty(), "data is not kept past the limit");
    assert_eq!(msg.size, 17);
    assert_eq!(n, 20);
}

#[test]
fn line_length_limit() {
    let ok_line = [b'a'; 998];
    let mut input = ok_line.to_vec();
    input.extend_from_slice(b"\r\n.\r\n");
    let (_, _, msg) = feed_parts(DataLimits::default(), &[&input]);
    assert!(msg.is_clean());
    // A stuffed dot does not count.
    let mut stuffed = b".".to_vec();
    stuffed.extend_from_slice(&input);
    let (_, _, msg) = feed_parts(DataLimits::default(), &[&stuffed]);
    assert!(msg.is_clean());
    let mut long = b"x".to_vec();
    long.extend_from_slice(&input);
    let (_, done, msg) = feed_parts(DataLimits::default(), &[&long]);
    assert!(done && msg.line_too_long && !msg.too_large);
    // Small limit, every split.
    let limits = DataLimits {
        max_line_length: 5,
        ..DataLimits::default()
    };
    assert!(receive(limits, b"abc\r\nabc\r\n.\r\n").2.is_clean());
    assert!(receive(limits, b"abc\r\nabcd\r\n.\r\n").2.line_too_long);
}

fn bdat_feed(binary: bool, chunks: &[&[u8]], split: usize) -> ReceivedMessage {
    let mut rx = BdatReceiver::new(
        DataLimits {
            max_message_size: 20,
            ..DataLimits::default()
        },
        binary,
    );
    for chunk in chunks {
        rx.start_chunk(chunk.len() as u64);
        let mut stream = chunk.to_vec();
        stream.extend_from_slice(b"BDAT 1 LAST\r\n");
        let k = split.min(chunk.len());
        let (n1, s1) = rx.ingest(&stream[..k]);
        assert_eq!(n1, k);
        let (n2, s2) = rx.ingest(&stream[k..]);
        assert_eq!(n1 + n2, chunk.len(), "consumes exactly the chunk");
        assert_eq!(s2, ChunkStatus::ChunkComplete);
        if k < chunk.len() {
            assert_eq!(s1, ChunkStatus::NeedMore);
        }
        assert_eq!(rx.remaining(), 0);
    }
    assert_eq!(rx.chunks() as usize, chunks.len());
    rx.finish()
}

#[test]
fn bdat_chunks() {
    for split in 0..8 {
        let msg = bdat_feed(false, &[b"ab\r", b"\ncd\r\n"], split);
        assert_eq!(msg.data, b"ab\r\ncd\r\n");
        assert!(msg.is_clean(), "CR|LF across chunks is a CRLF");
        assert!(bdat_feed(false, &[b"ab\r", b"cd\r\n"], split).bare_line_ending);
        assert!(bdat_feed(false, &[b"ab\n"], split).bare_line_ending);
        assert!(bdat_feed(false, &[b"ab\r\n", b"\n"], split).bare_line_ending);
        assert!(
            bdat_feed(false, &[b"ab\r"], split).bare_line_ending,
            "trailing CR"
        );
        assert!(
            bdat_feed(true, &[b"ab\r", b"\n\n\r"], split).is_clean(),
            "BINARYMIME"
        );
        assert!(bdat_feed(false, &[b"", b"a\r\n"], split).is_clean());
        let big = bdat_feed(false, &[b"0123456789", b"0123456789", b"x"], split);
        assert!(big.too_large && big.data.is_empty() && big.size == 21);
        // No dot-stuffing in BDAT.
        assert_eq!(bdat_feed(false, &[b".\r\n"], split).data, b".\r\n");
    }
}
