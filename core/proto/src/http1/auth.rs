//! `Proxy-Authorization` credentials, and comparing them without leaking timing.
//!
//! veil exposes the scheme and the raw token and leaves the policy to the engine. Two
//! helpers cover the schemes it uses: [`Credentials::bearer_matches`] and
//! [`Credentials::basic_matches`] compare in time that depends only on the lengths, and
//! [`Credentials::decode_basic`] decodes `Basic` into a caller buffer for engines that look
//! the user up.

use core::fmt;

use crate::error::BufferTooSmall;

use super::syntax::is_token;

/// The credentials of a `Proxy-Authorization` field.
//# RFC 9110 §11.4: credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
///
/// `Debug` shows the scheme and hides the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'b> {
    scheme: &'b str,
    token: &'b [u8],
}

impl<'b> Credentials<'b> {
    /// Splits a field value into scheme and token, or `None` when the scheme is not a token.
    pub(crate) fn parse(value: &'b [u8]) -> Option<Self> {
        let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
            Some(space) => value.split_at_checked(space)?,
            None => (value, &b""[..]),
        };
        if !is_token(scheme) {
            return None;
        }
        let token = rest.trim_ascii_start();
        Some(Self {
            scheme: core::str::from_utf8(scheme).ok()?,
            token,
        })
    }

    /// The authentication scheme as sent (`Basic`, `Bearer`, …). Compare it with
    /// [`is_scheme`](Self::is_scheme): schemes are case-insensitive.
    pub const fn scheme(&self) -> &'b str {
        self.scheme
    }

    /// Everything after the scheme: a `token68` or `auth-param`s, as received.
    pub const fn token(&self) -> &'b [u8] {
        self.token
    }

    /// Whether the scheme is `scheme`, ignoring ASCII case (auth-schemes are
    /// case-insensitive).
    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// Whether these are `Bearer` credentials carrying exactly `expected`.
    ///
    /// The comparison takes time that depends on the lengths only.
    pub fn bearer_matches(&self, expected: &[u8]) -> bool {
        self.is_scheme("Bearer") & constant_time_eq(self.token, expected)
    }

    /// Whether these are `Basic` credentials for exactly `user_id` and `password`.
    ///
    /// Encodes `user_id:password` as it goes and compares it with the token, so nothing is
    /// decoded or stored; the time taken depends on the lengths only. A client that sends
    /// non-canonical base64 (no padding) does not match.
    pub fn basic_matches(&self, user_id: &[u8], password: &[u8]) -> bool {
        self.is_scheme("Basic") & base64_matches(self.token, &[user_id, b":", password])
    }

    /// Decodes `Basic` credentials into `out` and splits them at the first colon.
    //# RFC 7617 §2: "a user-id containing a colon character is invalid, as the first colon
    //# in a user-pass string separates user-id and password from one another; text after
    //# the first colon is part of the password."
    pub fn decode_basic<'o>(&self, out: &'o mut [u8]) -> Result<BasicCredentials<'o>, BasicError> {
        if !self.is_scheme("Basic") {
            return Err(BasicError::NotBasic);
        }
        let len = decode_base64(self.token, out)?;
        let user_pass = out.get(..len).unwrap_or_default();
        let colon = user_pass
            .iter()
            .position(|&b| b == b':')
            .ok_or(BasicError::MissingColon)?;
        let (user_id, rest) = user_pass
            .split_at_checked(colon)
            .ok_or(BasicError::MissingColon)?;
        Ok(BasicCredentials {
            user_id,
            password: rest.get(1..).unwrap_or_default(),
        })
    }
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("scheme", &self.scheme)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A decoded `Basic` user-id and password. `Debug` hides the password.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BasicCredentials<'o> {
    /// The user-id: the bytes before the first colon.
    pub user_id: &'o [u8],
    /// The password: everything after the first colon.
    pub password: &'o [u8],
}

impl fmt::Debug for BasicCredentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("user_id", &self.user_id)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why [`Credentials::decode_basic`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BasicError {
    /// The scheme is not `Basic`.
    NotBasic,
    /// The token is not canonical padded base64 (RFC 4648 §4).
    InvalidBase64,
    /// The decoded text has no colon between user-id and password.
    MissingColon,
    /// `out` cannot hold the decoded credentials.
    BufferTooSmall(BufferTooSmall),
}

impl From<BufferTooSmall> for BasicError {
    fn from(e: BufferTooSmall) -> Self {
        Self::BufferTooSmall(e)
    }
}

impl fmt::Display for BasicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBasic => f.write_str("credentials are not Basic"),
            Self::InvalidBase64 => f.write_str("Basic credentials are not valid base64"),
            Self::MissingColon => f.write_str("Basic credentials have no colon"),
            Self::BufferTooSmall(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for BasicError {}

/// Compares two byte strings in time that depends only on their lengths.
///
/// Different lengths return `false` at once: the length of a secret is not hidden.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn sextet(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes canonical padded base64 into `out`, returning the decoded length.
fn decode_base64(input: &[u8], out: &mut [u8]) -> Result<usize, BasicError> {
    let padding = input.iter().rev().take_while(|&&b| b == b'=').count();
    if input.len() % 4 != 0 || padding > 2 {
        return Err(BasicError::InvalidBase64);
    }
    let needed = input.len() / 4 * 3 - padding;
    if out.len() < needed {
        return Err(BufferTooSmall {
            needed,
            available: out.len(),
        }
        .into());
    }
    let body = input.get(..input.len() - padding).unwrap_or_default();
    let mut written = 0;
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &b in body {
        acc = (acc << 6) | u32::from(sextet(b).ok_or(BasicError::InvalidBase64)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            let [.., byte] = (acc >> bits).to_be_bytes();
            if let Some(slot) = out.get_mut(written) {
                *slot = byte;
            }
            written += 1;
            acc &= (1 << bits) - 1;
        }
    }
    // Canonical encodings leave the unused low bits of the last sextet zero.
    if acc != 0 {
        return Err(BasicError::InvalidBase64);
    }
    Ok(written)
}

/// Whether `token` is the canonical padded base64 encoding of the concatenated `parts`,
/// in time that depends only on the lengths.
fn base64_matches(token: &[u8], parts: &[&[u8]]) -> bool {
    let raw_len: usize = parts.iter().map(|p| p.len()).sum();
    if token.len() != raw_len.div_ceil(3) * 4 {
        return false;
    }
    let mut raw = parts.iter().flat_map(|p| p.iter().copied());
    let mut diff = 0u8;
    for quad in token.chunks_exact(4) {
        let group = [raw.next(), raw.next(), raw.next()];
        for (expected, actual) in encode_group(group).iter().zip(quad) {
            diff |= expected ^ actual;
        }
    }
    core::hint::black_box(diff) == 0
}

/// Encodes up to three bytes (a `None` marks the end) as four base64 characters.
fn encode_group(group: [Option<u8>; 3]) -> [u8; 4] {
    let present = group.iter().take_while(|b| b.is_some()).count();
    let [a, b, c] = group.map(Option::unwrap_or_default);
    let triple = u32::from_be_bytes([0, a, b, c]);
    let mut out = [b'='; 4];
    for (slot, shift) in out.iter_mut().zip([18u32, 12, 6, 0]).take(present + 1) {
        let index = usize::try_from((triple >> shift) & 0x3f).unwrap_or_default();
        *slot = BASE64_ALPHABET.get(index).copied().unwrap_or(b'=');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(value: &[u8]) -> Credentials<'_> {
        Credentials::parse(value).unwrap()
    }

    #[test]
    fn splits_scheme_and_token() {
        let c = creds(b"Basic  QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(c.scheme(), "Basic");
        assert_eq!(c.token(), b"QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        let c = creds(b"Negotiate");
        assert_eq!((c.scheme(), c.token()), ("Negotiate", &b""[..]));
        assert_eq!(Credentials::parse(b""), None);
        assert_eq!(Credentials::parse(b"Bas/ic abc"), None);
        assert_eq!(Credentials::parse(b" Basic abc"), None);
    }

    #[test]
    fn debug_hides_the_token() {
        let shown = std::format!("{:?}", creds(b"Bearer s3cr3t"));
        assert_eq!(
            shown,
            r#"Credentials { scheme: "Bearer", token: "<redacted>" }"#
        );
        let mut out = [0; 32];
        let basic = creds(b"Basic dTpzM2NyM3Q=").decode_basic(&mut out).unwrap();
        let shown = std::format!("{basic:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn bearer_compares_scheme_case_insensitively() {
        assert!(creds(b"Bearer tok-en.1").bearer_matches(b"tok-en.1"));
        assert!(creds(b"bEARER tok-en.1").bearer_matches(b"tok-en.1"));
        assert!(!creds(b"Bearer tok-en.2").bearer_matches(b"tok-en.1"));
        assert!(!creds(b"Bearer tok-en.1x").bearer_matches(b"tok-en.1"));
        assert!(!creds(b"Basic tok-en.1").bearer_matches(b"tok-en.1"));
    }

    /// RFC 7617 §2's example: "Aladdin" / "open sesame".
    #[test]
    fn basic_rfc7617_example() {
        let c = creds(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(c.basic_matches(b"Aladdin", b"open sesame"));
        assert!(!c.basic_matches(b"Aladdin", b"open sesamE"));
        assert!(!c.basic_matches(b"Aladdin", b"open sesame "));
        let mut out = [0; 19];
        let decoded = c.decode_basic(&mut out).unwrap();
        assert_eq!(decoded.user_id, b"Aladdin");
        assert_eq!(decoded.password, b"open sesame");
    }

    #[test]
    fn basic_splits_at_the_first_colon() {
        // "u:p:q"
        let mut out = [0; 8];
        let decoded = creds(b"Basic dTpwOnE=").decode_basic(&mut out).unwrap();
        assert_eq!(
            (decoded.user_id, decoded.password),
            (&b"u"[..], &b"p:q"[..])
        );
        assert!(creds(b"Basic dTpwOnE=").basic_matches(b"u", b"p:q"));
        // ":" alone: empty user-id and password.
        let decoded = creds(b"Basic Og==").decode_basic(&mut out).unwrap();
        assert_eq!((decoded.user_id, decoded.password), (&b""[..], &b""[..]));
        assert!(creds(b"Basic Og==").basic_matches(b"", b""));
    }

    #[test]
    fn basic_decode_errors() {
        let mut out = [0; 32];
        let err = |value: &[u8]| creds(value).decode_basic(&mut [0; 32]).unwrap_err();
        assert_eq!(err(b"Bearer Og=="), BasicError::NotBasic);
        assert_eq!(err(b"Basic Og"), BasicError::InvalidBase64);
        assert_eq!(err(b"Basic O==="), BasicError::InvalidBase64);
        assert_eq!(err(b"Basic O=g="), BasicError::InvalidBase64);
        assert_eq!(err(b"Basic Oh=="), BasicError::InvalidBase64);
        assert_eq!(err(b"Basic Og-_"), BasicError::InvalidBase64);
        // "user" has no colon.
        assert_eq!(err(b"Basic dXNlcg=="), BasicError::MissingColon);
        assert_eq!(
            creds(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").decode_basic(&mut out[..18]),
            Err(BasicError::BufferTooSmall(BufferTooSmall {
                needed: 19,
                available: 18
            }))
        );
    }

    #[test]
    fn base64_round_trips_every_length() {
        let data: std::vec::Vec<u8> = (0..=255).collect();
        for len in 0..40 {
            let raw = &data[200 - len..200];
            let mut encoded = std::vec::Vec::new();
            let mut bytes = raw.iter().copied();
            loop {
                let group = [bytes.next(), bytes.next(), bytes.next()];
                if group[0].is_none() {
                    break;
                }
                encoded.extend_from_slice(&encode_group(group));
            }
            assert!(base64_matches(&encoded, &[raw]), "{len}");
            let mut out = [0; 40];
            let n = decode_base64(&encoded, &mut out).unwrap();
            assert_eq!(&out[..n], raw);
        }
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
