//! The lines of the chunked transfer coding: chunk-size lines and trailer field lines.
//!
//! Each scanner reads one line left to right and stops at the first byte that decides it:
//! the LF that ends it, or the first byte the grammar does not allow. So a prefix of a line
//! is either still undecided or decided exactly as the whole line is, however the bytes
//! arrive.

use super::StreamError;
use crate::http1::syntax::is_tchar;

/// The longest chunk-size line accepted, chunk extensions and CRLF included.
//# RFC 9112 §7.1.1: "A server ought to limit the total length of chunk extensions received
//# in a request to an amount reasonable for the services provided, in the same way that it
//# applies length limitations and timeouts for other parts of a message, and generate an
//# appropriate 4xx (Client Error) response if that amount is exceeded."
pub const MAX_CHUNK_LINE_LEN: usize = 1024;

/// What the start of the input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Line<T> {
    /// A whole line, `len` bytes with its CRLF, meaning `what`.
    Complete { len: usize, what: T },
    /// No decision yet: the line may still turn out valid.
    Incomplete,
}

/// Where a chunk-size line scanner is.
#[derive(Clone, Copy)]
enum ChunkState {
    /// Reading hex digits; how many so far.
    Size(usize),
    /// Whitespace after the size: only more of it or `;` may follow.
    SizeWs,
    /// After `;` (and whitespace): a name must start.
    NameStart,
    Name,
    /// Whitespace after a name: `=` or `;` must follow.
    NameWs,
    /// After `=` (and whitespace): a value must start.
    ValueStart,
    Token,
    Quoted,
    QuotedEscape,
    /// Right after a token or quoted value: whitespace, `;` or CR.
    ValueEnd,
    /// Whitespace after a value: only more of it or `;` may follow.
    ValueWs,
    /// After CR: LF must follow.
    Cr,
}

const fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t')
}

/// `qdtext` of RFC 9110 §5.6.4: HTAB, SP, `!`, `#`–`[`, `]`–`~`, obs-text.
const fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// Reads a chunk-size line at the start of `input`: the chunk size it announces.
//# RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//# chunk-size = 1*HEXDIG
//# last-chunk = 1*("0") [ chunk-ext ] CRLF
//# RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name
//#   [ BWS "=" BWS chunk-ext-val ] )
//# chunk-ext-name = token
//# chunk-ext-val  = token / quoted-string
pub(super) fn chunk_size_line(input: &[u8]) -> Result<Line<u64>, StreamError> {
    let window = input.get(..MAX_CHUNK_LINE_LEN).unwrap_or(input);
    let mut state = ChunkState::Size(0);
    let mut size = 0u64;
    for (index, &b) in window.iter().enumerate() {
        // A line in the chunked coding ends with CRLF, never a bare LF: this splitter does
        // not take RFC 9112 §2.2's leave to accept one, so that it cannot disagree with a
        // recipient that does not either.
        if b == b'\n' && !matches!(state, ChunkState::Cr) {
            return Err(StreamError::ChunkLineEnding);
        }
        state = match state {
            ChunkState::Size(digits) => {
                if let Some(digit) = char::from(b).to_digit(16) {
                    //# RFC 9112 §7.1: "Recipients MUST anticipate potentially large
                    //# hexadecimal numerals and prevent parsing errors due to integer
                    //# conversion overflows or precision loss due to integer
                    //# representation."
                    size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(digit)))
                        .ok_or(StreamError::ChunkSize)?;
                    ChunkState::Size(digits + 1)
                } else if digits == 0 {
                    return Err(StreamError::ChunkSize);
                } else if b == b'\r' {
                    ChunkState::Cr
                } else if b == b';' {
                    ChunkState::NameStart
                } else if is_ws(b) {
                    ChunkState::SizeWs
                } else {
                    return Err(StreamError::ChunkSize);
                }
            }
            ChunkState::SizeWs
            | ChunkState::ValueWs
            | ChunkState::NameStart
            | ChunkState::ValueStart
                if is_ws(b) =>
            {
                state
            }
            ChunkState::SizeWs
            | ChunkState::ValueWs
            | ChunkState::NameWs
            | ChunkState::Name
            | ChunkState::Token
            | ChunkState::ValueEnd
                if b == b';' =>
            {
                ChunkState::NameStart
            }
            ChunkState::NameStart | ChunkState::Name if is_tchar(b) => ChunkState::Name,
            ChunkState::Name | ChunkState::Token | ChunkState::ValueEnd if b == b'\r' => {
                ChunkState::Cr
            }
            ChunkState::Name | ChunkState::NameWs if is_ws(b) => ChunkState::NameWs,
            ChunkState::Name | ChunkState::NameWs if b == b'=' => ChunkState::ValueStart,
            ChunkState::ValueStart if b == b'"' => ChunkState::Quoted,
            ChunkState::ValueStart | ChunkState::Token if is_tchar(b) => ChunkState::Token,
            ChunkState::Token | ChunkState::ValueEnd if is_ws(b) => ChunkState::ValueWs,
            ChunkState::Quoted if b == b'"' => ChunkState::ValueEnd,
            ChunkState::Quoted if b == b'\\' => ChunkState::QuotedEscape,
            ChunkState::Quoted if is_qdtext(b) => ChunkState::Quoted,
            //# RFC 9110 §5.6.4: quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            ChunkState::QuotedEscape if b == b'\t' || b == b' ' || b >= 0x21 && b != 0x7f => {
                ChunkState::Quoted
            }
            ChunkState::Cr if b == b'\n' => {
                return Ok(Line::Complete {
                    len: index + 1,
                    what: size,
                });
            }
            ChunkState::Cr => return Err(StreamError::ChunkLineEnding),
            _ => return Err(StreamError::ChunkExtension),
        };
    }
    if window.len() >= MAX_CHUNK_LINE_LEN {
        Err(StreamError::ChunkLineTooLong)
    } else {
        Ok(Line::Incomplete)
    }
}

/// A line of the trailer section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrailerLine {
    /// A field line.
    Field,
    /// The empty line that ends the section, and the message.
    End,
}

#[derive(Clone, Copy)]
enum TrailerState {
    Start,
    Name,
    Value,
    Cr,
    EmptyCr,
}

/// Reads one line of a trailer section, looking at no more than `budget` bytes.
//# RFC 9112 §7.1.2: trailer-section = *( field-line CRLF )
//# RFC 9112 §5: field-line = field-name ":" OWS field-value OWS
pub(super) fn trailer_line(input: &[u8], budget: usize) -> Result<Line<TrailerLine>, StreamError> {
    let window = input.get(..budget).unwrap_or(input);
    let mut state = TrailerState::Start;
    for (index, &b) in window.iter().enumerate() {
        if b == b'\n' && !matches!(state, TrailerState::Cr | TrailerState::EmptyCr) {
            return Err(StreamError::ChunkLineEnding);
        }
        state = match state {
            TrailerState::Start if b == b'\r' => TrailerState::EmptyCr,
            // A line that starts with whitespace is obs-fold, refused as in the head.
            TrailerState::Start | TrailerState::Name if is_tchar(b) => TrailerState::Name,
            TrailerState::Name if b == b':' => TrailerState::Value,
            //# RFC 9110 §5.5: field-vchar = VCHAR / obs-text
            TrailerState::Value if b == b'\t' || b >= 0x20 && b != 0x7f => TrailerState::Value,
            TrailerState::Value if b == b'\r' => TrailerState::Cr,
            TrailerState::Cr | TrailerState::EmptyCr if b == b'\n' => {
                let what = if matches!(state, TrailerState::Cr) {
                    TrailerLine::Field
                } else {
                    TrailerLine::End
                };
                return Ok(Line::Complete {
                    len: index + 1,
                    what,
                });
            }
            TrailerState::Cr | TrailerState::EmptyCr => {
                return Err(StreamError::ChunkLineEnding);
            }
            _ => return Err(StreamError::Trailer),
        };
    }
    if window.len() >= budget {
        Err(StreamError::TrailersTooLarge)
    } else {
        Ok(Line::Incomplete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(line: &[u8]) -> Result<Line<u64>, StreamError> {
        chunk_size_line(line)
    }

    fn complete(line: &[u8], value: u64) {
        assert_eq!(
            size(line),
            Ok(Line::Complete {
                len: line.len(),
                what: value
            }),
            "{:?}",
            core::str::from_utf8(line)
        );
        for end in 0..line.len() {
            assert_eq!(size(&line[..end]), Ok(Line::Incomplete), "prefix {end}");
        }
    }

    #[test]
    fn chunk_sizes() {
        complete(b"0\r\n", 0);
        complete(b"000\r\n", 0);
        complete(b"a\r\n", 10);
        complete(b"Ff\r\n", 255);
        complete(b"ffffffffffffffff\r\n", u64::MAX);
        complete(b"0000000000000000000001\r\n", 1);
    }

    #[test]
    fn chunk_extensions() {
        complete(b"5;a\r\n", 5);
        complete(b"5;a=b\r\n", 5);
        complete(b"5 ; a = b ; c\r\n", 5);
        complete(b"5;a=\"q \\\" \\\\ \xff\";b=\"\"\r\n", 5);
        complete(b"5;a;b;c=d\r\n", 5);
        complete(b"5\t;\ta\t=\t\"x\"\t;b\r\n", 5);
    }

    #[test]
    fn chunk_size_refusals() {
        let cases: [(&[u8], StreamError); 18] = [
            (b"\r\n", StreamError::ChunkSize),
            (b"g\r\n", StreamError::ChunkSize),
            (b"-1\r\n", StreamError::ChunkSize),
            (b"+1\r\n", StreamError::ChunkSize),
            (b"0x5\r\n", StreamError::ChunkSize),
            (b"10000000000000000\r\n", StreamError::ChunkSize),
            (b" 5\r\n", StreamError::ChunkSize),
            (b"5\n", StreamError::ChunkLineEnding),
            (b"5\r\r\n", StreamError::ChunkLineEnding),
            (b"5\rx", StreamError::ChunkLineEnding),
            (b"5;a\n", StreamError::ChunkLineEnding),
            (b"5 \r\n", StreamError::ChunkExtension),
            (b"5;\r\n", StreamError::ChunkExtension),
            (b"5;=b\r\n", StreamError::ChunkExtension),
            (b"5;a=\r\n", StreamError::ChunkExtension),
            (b"5;a=b \r\n", StreamError::ChunkExtension),
            (b"5;a=\"b\r\n", StreamError::ChunkExtension),
            (b"5;a=b\"\r\n", StreamError::ChunkExtension),
        ];
        for (line, error) in cases {
            assert_eq!(
                size(line),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(size(b"5;a=\"\x7f\"\r\n"), Err(StreamError::ChunkExtension));
        assert_eq!(
            size(b"5;a=\"\\\x01\"\r\n"),
            Err(StreamError::ChunkExtension)
        );
    }

    #[test]
    fn chunk_line_length_bound() {
        let mut line = std::vec![b'1', b';', b'a'];
        line.resize(MAX_CHUNK_LINE_LEN - 2, b'a');
        line.extend_from_slice(b"\r\n");
        complete(&line, 1);
        line.insert(3, b'a');
        assert_eq!(size(&line), Err(StreamError::ChunkLineTooLong));
        assert_eq!(
            size(&line[..MAX_CHUNK_LINE_LEN]),
            Err(StreamError::ChunkLineTooLong)
        );
        assert_eq!(size(&line[..MAX_CHUNK_LINE_LEN - 1]), Ok(Line::Incomplete));
    }

    #[test]
    fn trailer_lines() {
        let field = |line: &[u8]| trailer_line(line, 100);
        assert_eq!(
            field(b"\r\n"),
            Ok(Line::Complete {
                len: 2,
                what: TrailerLine::End
            })
        );
        assert_eq!(
            field(b"X-Sum: 1 2\t\xff \r\nrest"),
            Ok(Line::Complete {
                len: 15,
                what: TrailerLine::Field
            })
        );
        assert_eq!(
            field(b"X:\r\n"),
            Ok(Line::Complete {
                len: 4,
                what: TrailerLine::Field
            })
        );
        assert_eq!(field(b"X-Sum: 1"), Ok(Line::Incomplete));
        assert_eq!(field(b"\r"), Ok(Line::Incomplete));
        for (line, error) in [
            (&b"\n"[..], StreamError::ChunkLineEnding),
            (b"\rx", StreamError::ChunkLineEnding),
            (b"X: 1\n", StreamError::ChunkLineEnding),
            (b"X: 1\r\r\n", StreamError::ChunkLineEnding),
            (b" X: 1\r\n", StreamError::Trailer),
            (b"X : 1\r\n", StreamError::Trailer),
            (b": 1\r\n", StreamError::Trailer),
            (b"X\r\n", StreamError::Trailer),
            (b"X: \x00\r\n", StreamError::Trailer),
            (b"X: \x7f\r\n", StreamError::Trailer),
            (b"X(: 1\r\n", StreamError::Trailer),
        ] {
            assert_eq!(
                field(line),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(trailer_line(b"X: 12\r\n", 7).map(|_| ()), Ok(()));
        assert_eq!(
            trailer_line(b"X: 12\r\n", 6),
            Err(StreamError::TrailersTooLarge)
        );
        assert_eq!(trailer_line(b"X: 1", 6), Ok(Line::Incomplete));
    }

    use std::string::String;
}
