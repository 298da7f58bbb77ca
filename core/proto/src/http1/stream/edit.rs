//! Rewriting a request head found in the stream: some fields removed, some added.

use core::fmt;

use crate::error::BufferTooSmall;
use crate::http1::request::Version;
use crate::http1::syntax::{Sink, encode_measured, is_tchar, measure, put_field};
use crate::http1::text::TextError;

use super::head::OriginRequest;

/// Fields an edit may neither remove nor add: they decide where the body ends
/// (`Content-Length`, `Transfer-Encoding`), which the stream has already computed from the
/// head as received, and which origin the request is for (`Host`).
const PROTECTED: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// Field lines to remove from a request head and field lines to add to it, checked once
/// when made (see [`new`](Self::new)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeadEdits<'a> {
    remove: &'a [&'a str],
    add: &'a [(&'a str, &'a str)],
}

/// Why [`HeadEdits::new`] refused an edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditError {
    /// `remove[index]` is not a field name, or names a protected field
    /// ([`TextError::ReservedFieldName`]: `Content-Length`, `Transfer-Encoding`, `Host`).
    Remove {
        /// Which entry of `remove`.
        index: usize,
        /// What is wrong with it.
        error: TextError,
    },
    /// `add[index]` has a name that is not a token or is protected, or a value that is not
    /// a field value veil writes (visible ASCII with inner spaces or tabs).
    Add {
        /// Which entry of `add`.
        index: usize,
        /// What is wrong with it.
        error: TextError,
    },
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Remove { index, error } => write!(f, "field to remove #{index}: {error}"),
            Self::Add { index, error } => write!(f, "field to add #{index}: {error}"),
        }
    }
}

impl core::error::Error for EditError {}

impl<'a> HeadEdits<'a> {
    /// No edit: the head is written as received, in canonical form.
    pub const NONE: HeadEdits<'static> = HeadEdits {
        remove: &[],
        add: &[],
    };

    /// Checks the edits: every name a token (compared ignoring ASCII case), every added
    /// value visible ASCII with inner SP or HTAB only, and no name among `Content-Length`,
    /// `Transfer-Encoding` and `Host`.
    ///
    /// Fields named in `remove` are dropped wherever they appear; fields in `add` are
    /// appended after the kept ones, in order, so removing and adding one name replaces it.
    //# RFC 9110 §5.5: field-value = *field-content
    //# field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
    pub fn new(remove: &'a [&'a str], add: &'a [(&'a str, &'a str)]) -> Result<Self, EditError> {
        for (index, name) in remove.iter().enumerate() {
            check_name(name).map_err(|error| EditError::Remove { index, error })?;
        }
        for (index, (name, value)) in add.iter().enumerate() {
            check_name(name)
                .and_then(|()| check_value(value))
                .map_err(|error| EditError::Add { index, error })?;
        }
        Ok(Self { remove, add })
    }

    /// The names of the fields to remove.
    pub const fn remove(&self) -> &'a [&'a str] {
        self.remove
    }

    /// The fields to add.
    pub const fn add(&self) -> &'a [(&'a str, &'a str)] {
        self.add
    }

    /// Whether a field named `name` is removed.
    pub fn removes(&self, name: &str) -> bool {
        self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
    }
}

fn check_name(name: &str) -> Result<(), TextError> {
    if name.is_empty() {
        return Err(TextError::Empty);
    }
    if let Some(index) = name.bytes().position(|b| !is_tchar(b)) {
        return Err(TextError::InvalidByte { index });
    }
    if PROTECTED.iter().any(|p| name.eq_ignore_ascii_case(p)) {
        return Err(TextError::ReservedFieldName);
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), TextError> {
    let bytes = value.as_bytes();
    let edge = |b: &u8| matches!(b, b' ' | b'\t');
    let bad = bytes
        .iter()
        .position(|b| !matches!(b, b'\t' | 0x20..=0x7e))
        .or_else(|| bytes.first().filter(|b| edge(b)).map(|_| 0))
        .or_else(|| bytes.last().filter(|b| edge(b)).map(|_| bytes.len() - 1));
    match bad {
        Some(index) => Err(TextError::InvalidByte { index }),
        None => Ok(()),
    }
}

impl OriginRequest<'_> {
    /// Bytes [`write_head`](Self::write_head) writes with these edits.
    pub fn head_len_with(&self, edits: &HeadEdits<'_>) -> usize {
        measure(|s| self.emit_head(edits, s))
    }

    /// Writes the head into `out` with `edits` applied, returning its length:
    ///
    /// ```text
    /// METHOD request-target HTTP/1.x        (as received)
    /// <received fields not removed, in order, as `Name: value`>
    /// <added fields, in order>
    /// (empty line)
    /// ```
    ///
    /// Empty lines before the request-line are dropped and every line ends in CRLF. The
    /// framing fields and `Host` are always written as received, so the body that follows
    /// ends where the stream said. Nothing is written when `out` is too small.
    pub fn write_head(
        &self,
        edits: &HeadEdits<'_>,
        out: &mut [u8],
    ) -> Result<usize, BufferTooSmall> {
        let len = self.head_len_with(edits);
        encode_measured(len, out, |w| self.emit_head(edits, w))
    }

    fn emit_head<S: Sink>(&self, edits: &HeadEdits<'_>, sink: &mut S) -> Result<(), S::Error> {
        sink.put(self.method().as_bytes())?;
        sink.put(b" ")?;
        sink.put(self.target().as_bytes())?;
        // The version is kept: inside a tunnel veil inspects the client's messages rather
        // than forwarding its own, and a changed version would change their meaning
        // (persistence, Transfer-Encoding).
        sink.put(match self.version() {
            Version::Http10 => b" HTTP/1.0\r\n",
            Version::Http11 => b" HTTP/1.1\r\n",
        })?;
        for field in self.fields().iter().filter(|f| !edits.removes(f.name())) {
            put_field(sink, field.name().as_bytes(), field.value())?;
        }
        for (name, value) in edits.add {
            put_field(sink, name.as_bytes(), value.as_bytes())?;
        }
        sink.put(b"\r\n")
    }
}
