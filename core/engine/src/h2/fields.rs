//! The checks RFC 9113 §8.2 and §8.3 put on a header list that need no HTTP semantics.
//!
//! Which pseudo-header fields a CONNECT or extended CONNECT needs is the caller's to check;
//! this refuses only what is malformed in any message.

/// Why a header list is malformed (a stream error of type `PROTOCOL_ERROR`, RFC 9113
/// §8.1.1), or `None`.
pub(super) fn malformed(list: &[(Vec<u8>, Vec<u8>)], trailers: bool) -> Option<&'static str> {
    let mut regular_seen = false;
    for (name, value) in list {
        let pseudo = name.first() == Some(&b':');
        if pseudo {
            //# RFC 9113 §8.3: "All pseudo-header fields MUST appear in a field block before
            //# all regular field lines."
            if regular_seen {
                return Some("pseudo-header field after a regular field");
            }
            //# RFC 9113 §8.1: "Trailers MUST NOT include pseudo-header fields"
            if trailers {
                return Some("pseudo-header field in trailers");
            }
        } else {
            regular_seen = true;
        }
        if let Some(reason) = bad_name(if pseudo { &name[1..] } else { name }) {
            return Some(reason);
        }
        if let Some(reason) = bad_value(value) {
            return Some(reason);
        }
        if let Some(reason) = connection_specific(name, value) {
            return Some(reason);
        }
    }
    None
}

//# RFC 9113 §8.2.1: "A field name MUST NOT contain characters in the ranges 0x00-0x20,
//# 0x41-0x5a, or 0x7f-0xff (all ranges inclusive)."
//# RFC 9113 §8.2.1: "With the exception of pseudo-header fields (Section 8.3), which have a
//# name that starts with a single colon, field names MUST NOT include a colon"
fn bad_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty field name");
    }
    if name
        .iter()
        .any(|&b| b <= 0x20 || b.is_ascii_uppercase() || b >= 0x7f || b == b':')
    {
        return Some("field name with an uppercase, control, colon or non-ASCII byte");
    }
    None
}

//# RFC 9113 §8.2.1: "A field value MUST NOT contain the zero value (ASCII NUL, 0x00), line
//# feed (ASCII LF, 0x0a), or carriage return (ASCII CR, 0x0d) at any position."
//# RFC 9113 §8.2.1: "A field value MUST NOT start or end with an ASCII whitespace character
//# (ASCII SP or HTAB, 0x20 or 0x09)."
fn bad_value(value: &[u8]) -> Option<&'static str> {
    if value.iter().any(|&b| matches!(b, 0 | b'\n' | b'\r')) {
        return Some("field value with NUL, CR or LF");
    }
    let edge = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    if edge(value.first()) || edge(value.last()) {
        return Some("field value with leading or trailing whitespace");
    }
    None
}

//# RFC 9113 §8.2.2: "An endpoint MUST NOT generate an HTTP/2 message containing
//# connection-specific header fields. This includes the Connection header field and those
//# listed as having connection-specific semantics in Section 7.6.1 of [HTTP] (that is,
//# Proxy-Connection, Keep-Alive, Transfer-Encoding, and Upgrade). Any message containing
//# connection-specific header fields MUST be treated as malformed (Section 8.1.1)."
//# RFC 9113 §8.2.2: "The only exception to this is the TE header field, which MAY be
//# present in an HTTP/2 request; when it is, it MUST NOT contain any value other than
//# "trailers"."
fn connection_specific(name: &[u8], value: &[u8]) -> Option<&'static str> {
    match name {
        b"connection" | b"proxy-connection" | b"keep-alive" | b"transfer-encoding" | b"upgrade" => {
            Some("connection-specific header field")
        }
        b"te" if value != b"trailers" => Some("TE other than \"trailers\""),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(fields: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn well_formed_connect_passes() {
        let ok = list(&[
            (":method", "CONNECT"),
            (":authority", "example.com:443"),
            ("proxy-authorization", "Bearer x"),
            ("te", "trailers"),
        ]);
        assert_eq!(malformed(&ok, false), None);
        assert_eq!(malformed(&list(&[("grpc-status", "0")]), true), None);
    }

    #[test]
    fn malformed_lists() {
        let cases: [&[(&str, &str)]; 9] = [
            &[("Host", "x")],
            &[("x", "1"), (":method", "GET")],
            &[("connection", "close")],
            &[("transfer-encoding", "chunked")],
            &[("te", "gzip")],
            &[("x", "a\nb")],
            &[("x", " a")],
            &[("", "a")],
            &[("a:b", "c")],
        ];
        for case in cases {
            assert!(malformed(&list(case), false).is_some(), "{case:?}");
        }
        assert!(malformed(&list(&[(":status", "200")]), true).is_some());
    }
}
