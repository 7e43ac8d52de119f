//! Pure: a watch body's `Bytes` chunks split into lines in place, copied only when a line straddles chunks, with a bound on a line's size.
//!
//! A watch body is newline-delimited JSON, one event a line; servers send one event a chunk (or
//! several), so nearly every line lies whole inside one chunk. [`LineSplitter`] hands such a
//! line out as a slice of the chunk (no copy, no allocation); only a line cut by a chunk
//! boundary is gathered into a buffer of its own. A trailing `\r` is dropped (`\r\n` ends a line
//! too) and empty lines are skipped, as kube's `LinesCodec` framing effectively does (its empty
//! lines fail to decode as EOF and are dropped). A line longer than the splitter's bound is an
//! error, never an unbounded buffer.
//!
//! Use: [`LineSplitter::next_line`] until it answers `None`, then [`LineSplitter::push`] the
//! next chunk; at the body's end, [`LineSplitter::finish`] gives the last line if it had no
//! newline.

use bytes::Bytes;

/// The bound [`crate::watch::wire::WireSource`] puts on a watch line: far above any object the
/// API server stores (etcd's request limit is 1.5 MiB by default, 3 MiB at most).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// A line longer than the splitter's bound (its start has been read, its end not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("watch line longer than {max} bytes")]
pub struct LineTooLong {
    pub max: usize,
}

/// Splits chunks into lines; see the module doc.
#[derive(Debug)]
pub struct LineSplitter {
    /// The chunk being split, from `pos` on.
    chunk: Bytes,
    pos: usize,
    /// The start of a line whose end is in a later chunk; or, when `gathered`, the whole line
    /// last handed out (cleared at the next call).
    partial: Vec<u8>,
    gathered: bool,
    max: usize,
}

/// The line without its `\r`, if it ends with one.
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl LineSplitter {
    /// A splitter whose lines are at most `max` bytes (newline excluded).
    pub fn new(max: usize) -> Self {
        Self {
            chunk: Bytes::new(),
            pos: 0,
            partial: Vec::new(),
            gathered: false,
            max,
        }
    }

    /// The next chunk of the body. Call only once [`LineSplitter::next_line`] answered `None`
    /// (the previous chunk is used up).
    pub fn push(&mut self, chunk: Bytes) {
        debug_assert!(
            self.pos >= self.chunk.len(),
            "pushed before the chunk was used up"
        );
        self.chunk = chunk;
        self.pos = 0;
    }

    /// The next complete line (without `\n` or `\r\n`), or `None` when the chunks pushed so far
    /// hold no more complete line. Empty lines are skipped.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, LineTooLong> {
        if std::mem::take(&mut self.gathered) {
            self.partial.clear();
        }
        loop {
            let rest = &self.chunk[self.pos..];
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                // No end in this chunk: keep its bytes for the next one (one more than the
                // bound: it may be the line's `\r`).
                if self.partial.len() + rest.len() > self.max + 1 {
                    return Err(self.too_long());
                }
                self.partial.extend_from_slice(rest);
                self.pos = self.chunk.len();
                return Ok(None);
            };
            let start = self.pos;
            self.pos += nl + 1;
            if self.partial.is_empty() {
                if nl > self.max + usize::from(rest[..nl].ends_with(b"\r")) {
                    return Err(self.too_long());
                }
                if trim_cr(&rest[..nl]).is_empty() {
                    continue;
                }
                let line = &self.chunk[start..start + nl];
                return Ok(Some(trim_cr(line)));
            }
            // The line began in an earlier chunk: gather it.
            if self.partial.len() + nl > self.max + 1 {
                return Err(self.too_long());
            }
            self.partial
                .extend_from_slice(&self.chunk[start..start + nl]);
            if self.partial.ends_with(b"\r") {
                self.partial.pop();
            }
            if self.partial.len() > self.max {
                return Err(self.too_long());
            }
            if self.partial.is_empty() {
                continue;
            }
            self.gathered = true;
            return Ok(Some(&self.partial));
        }
    }

    /// The body ended: its last line, if it had no newline (and is not empty).
    pub fn finish(&mut self) -> Result<Option<&[u8]>, LineTooLong> {
        if std::mem::take(&mut self.gathered) {
            self.partial.clear();
        }
        // Whatever `next_line` left unread is in `partial` (it reads a chunk to its end).
        if self.partial.ends_with(b"\r") {
            self.partial.pop();
        }
        if self.partial.len() > self.max {
            return Err(self.too_long());
        }
        if self.partial.is_empty() {
            return Ok(None);
        }
        self.gathered = true;
        Ok(Some(&self.partial))
    }

    /// The error, and the state after it: the line so far is dropped, and so is the rest of
    /// the chunk (the stream is failed; nothing after it is read).
    fn too_long(&mut self) -> LineTooLong {
        self.partial = Vec::new();
        self.pos = self.chunk.len();
        LineTooLong { max: self.max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line `chunks` split into with bound `max`, then the final line; or the error.
    fn split(chunks: &[&[u8]], max: usize) -> Result<Vec<String>, LineTooLong> {
        let mut s = LineSplitter::new(max);
        let mut lines = Vec::new();
        for chunk in chunks {
            s.push(Bytes::copy_from_slice(chunk));
            while let Some(line) = s.next_line()? {
                lines.push(String::from_utf8(line.to_vec()).unwrap());
            }
        }
        if let Some(last) = s.finish()? {
            lines.push(String::from_utf8(last.to_vec()).unwrap());
        }
        Ok(lines)
    }

    fn ok(lines: &[&str]) -> Result<Vec<String>, LineTooLong> {
        Ok(lines.iter().map(|l| l.to_string()).collect())
    }

    #[test]
    fn lines_are_split_at_newlines_wherever_the_chunks_are_cut() {
        // (chunks, lines): one line a chunk, several, one cut anywhere, `\r\n`, blank lines
        // skipped, a last line without newline kept.
        let table: &[(&[&[u8]], &[&str])] = &[
            (&[b"{\"a\":1}\n"], &["{\"a\":1}"]),
            (&[b"a\nb\nc\n"], &["a", "b", "c"]),
            (&[b"ab", b"c\nd", b"e\n"], &["abc", "de"]),
            (&[b"a", b"b", b"c", b"\n"], &["abc"]),
            (&[b"abc", b"\n", b"d\n"], &["abc", "d"]),
            (&[b"a\r\nb\r\n"], &["a", "b"]),
            (&[b"a\r", b"\nb\r\n"], &["a", "b"]),
            (&[b"a", b"\r\n"], &["a"]),
            (&[b"\n\r\n\n", b"a\n", b"\n"], &["a"]),
            (&[b"a\nlast"], &["a", "last"]),
            (&[b"a\nla", b"st\r"], &["a", "last"]),
            (&[b"a\n", b""], &["a"]),
            (&[b"", b"a", b"", b"\n"], &["a"]),
            (&[], &[]),
            (&[b"\r"], &[]),
            (&[b"x\r\r\n"], &["x\r"]),
        ];
        for (chunks, lines) in table {
            assert_eq!(split(chunks, 64), ok(lines), "chunks {chunks:?}");
        }
    }

    #[test]
    fn a_line_over_the_bound_is_an_error_wherever_it_is_cut() {
        // (chunks, bound, outcome): the bound counts the line without its `\n` / `\r\n`.
        type Case<'a> = (&'a [&'a [u8]], usize, Option<&'a [&'a str]>);
        let table: &[Case] = &[
            (&[b"abcd\n"], 4, Some(&["abcd"])),
            (&[b"abcd\r\n"], 4, Some(&["abcd"])),
            (&[b"ab", b"cd\r\n"], 4, Some(&["abcd"])),
            (&[b"ab", b"cd\r", b"\n"], 4, Some(&["abcd"])),
            (&[b"abcde\n"], 4, None),
            (&[b"ab", b"cde\n"], 4, None),
            (&[b"abc", b"de"], 4, None),
            (&[b"a\n", b"abcdefgh"], 4, None),
            // never ended: the buffer stops at the bound instead of growing
            (&[b"abc", b"d", b"e", b"f"], 4, None),
        ];
        for (chunks, max, want) in table {
            let want = match want {
                Some(lines) => ok(lines),
                None => Err(LineTooLong { max: *max }),
            };
            assert_eq!(split(chunks, *max), want, "chunks {chunks:?}");
        }
    }

    #[test]
    fn a_line_inside_one_chunk_is_a_slice_of_it_not_a_copy() {
        let chunk = Bytes::from_static(b"first\nsecond\n");
        let mut s = LineSplitter::new(64);
        s.push(chunk.clone());
        let line = s.next_line().unwrap().unwrap();
        assert_eq!(line, b"first");
        assert_eq!(line.as_ptr(), chunk.as_ptr(), "borrowed from the chunk");
        let line = s.next_line().unwrap().unwrap();
        assert_eq!(line.as_ptr(), chunk[6..].as_ptr());
        assert_eq!(s.next_line().unwrap(), None);
        assert_eq!(s.partial.capacity(), 0, "nothing was gathered");
    }

    #[test]
    fn the_buffer_never_grows_past_the_bound() {
        let mut s = LineSplitter::new(1000);
        let mut failed = false;
        for _ in 0..100 {
            s.push(Bytes::from(vec![b'x'; 64]));
            match s.next_line() {
                Ok(None) => assert!(s.partial.len() <= 1001, "bound + a `\\r`"),
                Ok(Some(_)) => panic!("no newline was sent"),
                Err(e) => {
                    assert_eq!(e, LineTooLong { max: 1000 });
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "6,400 bytes without a newline");
        assert!(s.partial.is_empty(), "dropped on error");
    }
}
