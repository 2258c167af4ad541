//! Incremental Server-Sent Events framing.
//!
//! [`SseFramer`] cuts a byte stream into whole events, whatever the chunking (events split at
//! any byte, `\n`, `\r\n` or `\r` line ends), and refuses events above a size cap so a
//! never-ending event cannot exhaust memory. [`event_data`] and [`replace_data`] read and
//! rewrite one event while keeping its `id:`, `event:`, `retry:` and comment lines.

use std::borrow::Cow;
use std::fmt;

use bytes::{Bytes, BytesMut};

/// An event grew past the size cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTooLarge {
    /// The cap in bytes.
    pub limit: usize,
}

impl fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server-sent event larger than {} bytes", self.limit)
    }
}

impl std::error::Error for EventTooLarge {}

/// Cuts a stream of bytes into raw SSE events (each ending with its blank line).
#[derive(Debug)]
pub struct SseFramer {
    buf: BytesMut,
    /// Where the line being scanned starts.
    line_start: usize,
    /// How far the current line has been searched for its end: a long line arriving in many
    /// chunks is scanned once, not once per chunk.
    scanned: usize,
    max_event: usize,
}

/// The first line end (`\n` or `\r`) in `bytes`.
fn line_end(bytes: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\n', b'\r', bytes)
}

impl SseFramer {
    /// A framer that refuses events above `max_event` bytes.
    #[must_use]
    pub fn new(max_event: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            line_start: 0,
            scanned: 0,
            max_event,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole event, raw, including its terminating blank line.
    ///
    /// # Errors
    ///
    /// [`EventTooLarge`] when the event being framed passes the cap.
    pub fn next_event(&mut self) -> Result<Option<Bytes>, EventTooLarge> {
        loop {
            let from = self.scanned.max(self.line_start);
            let Some(found) = line_end(&self.buf[from..]) else {
                self.scanned = self.buf.len();
                return self.check_cap().map(|()| None);
            };
            let end = from + found;
            let pos = end - self.line_start;
            let term = if self.buf[end] == b'\r' {
                match self.buf.get(end + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A lone `\r` at the end of what we have: wait to see if `\n` follows.
                    None => {
                        self.scanned = end;
                        return self.check_cap().map(|()| None);
                    }
                }
            } else {
                1
            };
            self.line_start = end + term;
            if self.line_start > self.max_event {
                return Err(EventTooLarge {
                    limit: self.max_event,
                });
            }
            if pos == 0 {
                let event = self.buf.split_to(self.line_start).freeze();
                self.line_start = 0;
                self.scanned = 0;
                return Ok(Some(event));
            }
        }
    }

    fn check_cap(&self) -> Result<(), EventTooLarge> {
        if self.buf.len() > self.max_event {
            Err(EventTooLarge {
                limit: self.max_event,
            })
        } else {
            Ok(())
        }
    }

    /// At the end of the stream: whatever unterminated event is left.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.line_start = 0;
        self.scanned = 0;
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// The lines of a raw event, without their line ends.
fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match line_end(rest) {
            None => (rest, &rest[rest.len()..]),
            Some(p) => {
                let skip = if rest[p] == b'\r' && rest.get(p + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                (&rest[..p], &rest[p + skip..])
            }
        };
        rest = next;
        Some(line)
    })
}

/// Splits a field line into name and value (one leading space of the value removed).
fn field(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b':') {
        None => (line, &[]),
        Some(p) => {
            let value = &line[p + 1..];
            (&line[..p], value.strip_prefix(b" ").unwrap_or(value))
        }
    }
}

/// The event's data: its `data:` lines joined with `\n`. `None` when it has none or they are
/// not UTF-8.
#[must_use]
pub fn event_data(raw: &[u8]) -> Option<Cow<'_, str>> {
    let mut data: Option<Cow<'_, [u8]>> = None;
    for line in lines(raw) {
        let (name, value) = field(line);
        if name != b"data" || line.first() == Some(&b':') {
            continue;
        }
        data = Some(match data {
            None => Cow::Borrowed(value),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                Cow::Owned(joined)
            }
        });
    }
    match data? {
        Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
        Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
    }
}

/// The value of the event's last `name:` field (`event`, `id`, `retry`), if any.
#[cfg(feature = "gateway")]
#[must_use]
pub(crate) fn event_field<'a>(raw: &'a [u8], name: &str) -> Option<&'a str> {
    let mut found = None;
    for line in lines(raw) {
        let (field, value) = field(line);
        if field == name.as_bytes() && line.first() != Some(&b':') {
            found = std::str::from_utf8(value).ok();
        }
    }
    found
}

/// The event with its data replaced by `data` (which must not contain line breaks); every
/// other line (`id:`, `event:`, `retry:`, comments) is kept in place.
#[must_use]
pub fn replace_data(raw: &[u8], data: &str) -> Bytes {
    debug_assert!(!data.contains(['\n', '\r']));
    let mut out = BytesMut::with_capacity(raw.len().max(data.len() + 16));
    let mut wrote_data = false;
    for line in lines(raw) {
        if line.is_empty() {
            continue;
        }
        let (name, _) = field(line);
        if name == b"data" && line.first() != Some(&b':') {
            if !wrote_data {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(data.as_bytes());
                out.extend_from_slice(b"\n");
                wrote_data = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    if !wrote_data {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(data.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

/// A whole event carrying one JSON-RPC message.
#[must_use]
pub(crate) fn message_event(data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(chunks: &[&[u8]], cap: usize) -> Result<Vec<Bytes>, EventTooLarge> {
        let mut f = SseFramer::new(cap);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c);
            while let Some(e) = f.next_event()? {
                out.push(e);
            }
        }
        out.extend(f.finish());
        Ok(out)
    }

    const STREAM: &[u8] = b": comment\r\nid: 0\r\nretry: 3000\r\ndata:\r\n\r\nevent: message\nid: 1\ndata: {\"a\":\ndata: 1}\n\nid: 2\rdata: x\r\r";

    #[test]
    fn frames_identically_at_every_split() {
        let whole = frame_all(&[STREAM], 1 << 20).unwrap();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole.concat(), STREAM);
        assert_eq!(event_data(&whole[0]).as_deref(), Some(""));
        assert_eq!(event_data(&whole[1]).as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(event_data(&whole[2]).as_deref(), Some("x"));
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let parts = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
                assert_eq!(
                    frame_all(&parts, 1 << 20).unwrap(),
                    whole,
                    "split at {i},{j}"
                );
            }
        }
        let bytewise: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(frame_all(&bytewise, 1 << 20).unwrap(), whole);
    }

    #[test]
    fn caps_event_size_even_without_line_ends() {
        assert!(frame_all(&[&[b'a'; 100]], 64).is_err());
        assert!(frame_all(&[b"data: ", &[b'a'; 100], b"\n\n"], 64).is_err());
        let mut many_lines = Vec::new();
        for _ in 0..20 {
            many_lines.extend_from_slice(b"data: aaaa\n");
        }
        assert!(frame_all(&[&many_lines], 64).is_err());
        assert!(frame_all(&[b"data: ok\n\n"], 64).is_ok());
    }

    #[test]
    fn replace_keeps_other_lines() {
        let raw =
            b": keep\r\nevent: message\r\nid: 9\r\ndata: {\"old\":\r\ndata: 1}\r\nretry: 5\r\n\r\n";
        let out = replace_data(raw, "{\"new\":2}");
        assert_eq!(
            &out[..],
            b": keep\nevent: message\nid: 9\ndata: {\"new\":2}\nretry: 5\n\n"
        );
        assert_eq!(event_data(&out).as_deref(), Some("{\"new\":2}"));
    }
}
