//! Validated text that veil writes into heads: its own name and quoted strings.
//!
//! Validation happens once, when the value is made, so that every encoder that takes these
//! types can only fail for lack of room.

use core::fmt;

use super::syntax::{Sink, is_tchar};

/// Why a piece of text cannot go into a head where it was meant to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextError {
    /// The text is empty where something is required.
    Empty,
    /// The byte at this index is not allowed here.
    InvalidByte {
        /// Index of the first offending byte.
        index: usize,
    },
    /// The field name is one the encoder writes itself (framing, `Connection`,
    /// `Proxy-Status`, `Proxy-Authenticate`), so a second copy could contradict it.
    ReservedFieldName,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("text must not be empty"),
            Self::InvalidByte { index } => write!(f, "byte {index} is not allowed here"),
            Self::ReservedFieldName => f.write_str("field name is written by the encoder itself"),
        }
    }
}

impl core::error::Error for TextError {}

/// The name veil gives itself in `Proxy-Status` and `Via`.
///
/// It must be both an HTTP `token` (what `Via`'s `received-by` pseudonym is) and a
/// structured-field Token (what a `Proxy-Status` member may be), so: an ASCII letter, then
/// `tchar`s.
//# RFC 9209 §2: "Each member of the list identifies the intermediary that inserted the
//# value"
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyName<'a>(&'a str);

impl<'a> ProxyName<'a> {
    /// Checks that `name` is a letter followed by `tchar`s.
    pub const fn new(name: &'a str) -> Result<Self, TextError> {
        let bytes = name.as_bytes();
        let Some(first) = bytes.first() else {
            return Err(TextError::Empty);
        };
        if !first.is_ascii_alphabetic() {
            return Err(TextError::InvalidByte { index: 0 });
        }
        let mut index = 1;
        while index < bytes.len() {
            if !is_tchar(bytes[index]) {
                return Err(TextError::InvalidByte { index });
            }
            index += 1;
        }
        Ok(Self(name))
    }

    /// The name.
    pub const fn as_str(&self) -> &'a str {
        self.0
    }
}

/// Printable ASCII text written as a quoted string: a structured-field String
/// (`details`, `next-hop`, `rcode` in `Proxy-Status`) or an HTTP `quoted-string` (a
/// challenge's `realm`).
///
/// Only SP and VCHAR are allowed; `"` and `\` are escaped when written. Both grammars
/// accept exactly that form.
//# RFC 8941 §4.1.6: "If input_string contains characters in the range %x00-1f or %x7f
//# (i.e., not in VCHAR or SP), fail serialization." ... "If char is "\" or DQUOTE:
//# Append "\" to output."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedText<'a>(&'a str);

impl<'a> QuotedText<'a> {
    /// Checks that `text` holds only SP and visible ASCII.
    pub const fn new(text: &'a str) -> Result<Self, TextError> {
        let bytes = text.as_bytes();
        let mut index = 0;
        while index < bytes.len() {
            if !matches!(bytes[index], 0x20..=0x7e) {
                return Err(TextError::InvalidByte { index });
            }
            index += 1;
        }
        Ok(Self(text))
    }

    /// The text, unescaped.
    pub const fn as_str(&self) -> &'a str {
        self.0
    }

    /// Writes the text between double quotes, escaping `"` and `\`.
    pub(crate) fn emit<S: Sink>(&self, sink: &mut S) -> Result<(), S::Error> {
        sink.put(b"\"")?;
        for chunk in self
            .0
            .as_bytes()
            .split_inclusive(|&b| b == b'"' || b == b'\\')
        {
            match chunk.split_last() {
                Some((&last, before)) if last == b'"' || last == b'\\' => {
                    sink.put(before)?;
                    sink.put(&[b'\\', last])?;
                }
                _ => sink.put(chunk)?,
            }
        }
        sink.put(b"\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::syntax::{encode_measured, measure};

    fn quoted(text: &str) -> std::string::String {
        let text = QuotedText::new(text).unwrap();
        let mut buf = [0; 64];
        let len = encode_measured(measure(|s| text.emit(s)), &mut buf, |w| text.emit(w)).unwrap();
        std::string::String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    #[test]
    fn proxy_names_are_letter_then_tchars() {
        assert_eq!(ProxyName::new("veil").unwrap().as_str(), "veil");
        assert!(ProxyName::new("veil-edge.example_1").is_ok());
        assert_eq!(ProxyName::new(""), Err(TextError::Empty));
        assert_eq!(
            ProxyName::new("1veil"),
            Err(TextError::InvalidByte { index: 0 })
        );
        assert_eq!(
            ProxyName::new("ve il"),
            Err(TextError::InvalidByte { index: 2 })
        );
        // sf-token allows ':' and '/', HTTP token does not; a name must fit both.
        assert_eq!(
            ProxyName::new("veil:1"),
            Err(TextError::InvalidByte { index: 4 })
        );
    }

    #[test]
    fn quoted_text_escapes_quote_and_backslash() {
        assert_eq!(quoted(""), r#""""#);
        assert_eq!(quoted("plain text"), r#""plain text""#);
        assert_eq!(quoted(r#"say "hi" \o/"#), r#""say \"hi\" \\o/""#);
        assert_eq!(quoted(r#""\"#), r#""\"\\""#);
    }

    #[test]
    fn quoted_text_rejects_controls_and_non_ascii() {
        assert_eq!(
            QuotedText::new("a\tb"),
            Err(TextError::InvalidByte { index: 1 })
        );
        assert_eq!(
            QuotedText::new("line\r\n"),
            Err(TextError::InvalidByte { index: 4 })
        );
        assert_eq!(
            QuotedText::new("del\x7f"),
            Err(TextError::InvalidByte { index: 3 })
        );
        assert_eq!(
            QuotedText::new("é"),
            Err(TextError::InvalidByte { index: 0 })
        );
    }
}
