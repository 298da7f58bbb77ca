//! The syntax a sniffed name must have before it is handed out.

/// The longest name, without a trailing dot (RFC 1035 §2.3.4).
const MAX_NAME_LEN: usize = 253;
/// The longest label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// `bytes` as a DNS name: 1 to 253 bytes besides one optional trailing dot, labels of 1 to
/// 63 ASCII letters, digits, `-` or `_`. None otherwise (which includes NUL, spaces,
/// non-ASCII bytes and anything else a rule should not see).
pub(super) fn dns_name(bytes: &[u8]) -> Option<&str> {
    let name = bytes.strip_suffix(b".").unwrap_or(bytes);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let labels_ok = name.split(|&b| b == b'.').all(|label| {
        (1..=MAX_LABEL_LEN).contains(&label.len())
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !labels_ok {
        return None;
    }
    core::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_and_refuses_the_rest() {
        for good in [
            "a",
            "example.com",
            "Example.COM.",
            "_srv.x-y.z9",
            "10.0.0.1",
        ] {
            assert_eq!(dns_name(good.as_bytes()), Some(good), "{good:?}");
        }
        let label = [b'a'; 63];
        assert!(dns_name(&label).is_some());
        assert!(dns_name(&[b'a'; 64]).is_none());
        let mut long = std::vec::Vec::new();
        for _ in 0..126 {
            long.extend_from_slice(b"a.");
        }
        long.push(b'b'); // 253 bytes
        assert!(dns_name(&long).is_some());
        long.push(b'.');
        assert!(dns_name(&long).is_some());
        long.pop();
        long.push(b'c');
        assert!(dns_name(&long).is_none());
        let bad: [&[u8]; 10] = [
            b"",
            b".",
            b"..",
            b"a..b",
            b".a",
            b"a\0b",
            b"a b",
            b"a:1",
            b"\xc3\xa4.com",
            b"a.b..",
        ];
        for bad in bad {
            assert_eq!(dns_name(bad), None, "{bad:?}");
        }
    }
}
