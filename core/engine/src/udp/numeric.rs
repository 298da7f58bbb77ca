//! The `target_host` of a CONNECT-UDP `:path` that veil-proto refuses as a numeric name
//! (`2130706433`, `0x7f.1`, `127.1`): some resolvers read such spellings as IPv4
//! addresses, so the edge must judge them as the address, as it does for a CONNECT
//! `:authority`, and refuse a forbidden one with 403 rather than 400.
//!
//! veil-proto's template matching reports only [`HostError::NumericName`] for them, not
//! where the value was; this module finds it. A template variable's value is a run of
//! unreserved characters and percent escapes that ends where a character it cannot contain
//! follows, so the value is a suffix of such a run in the path. Each suffix veil-proto
//! also calls a numeric name is tried, longest first, by putting a plain name in its place
//! and matching again: the one that then matches with that name as the host is the value.
//! At most [`MAX_PROBES`] matches and [`MAX_CANDIDATES`] suffixes are tried per request,
//! so a hostile path costs little.

use core::num::NonZeroU16;

use veil_proto::masque::udp::{Host, HostError, Name, PathError, PathTemplate};

/// Matches tried per request, at most.
const MAX_PROBES: usize = 8;

/// Suffixes looked at per request, at most (each costs one decoding of at most
/// [`MAX_ENCODED_HOST`] bytes).
const MAX_CANDIDATES: usize = 2048;

/// Longest percent-encoded host worth trying: three bytes for each of the 253 a name may
/// have.
const MAX_ENCODED_HOST: usize = 3 * 253;

/// The stand-in for the host while matching again.
const PROBE: &str = "a";

/// The decoded `target_host` and the port of a `:path` whose host veil-proto refused as a
/// numeric name; `None` when `error` is another error or the value cannot be found.
pub(crate) fn numeric_target(
    template: &PathTemplate<'_>,
    path: &[u8],
    error: PathError,
) -> Option<(String, NonZeroU16)> {
    if error != PathError::Host(HostError::NumericName) {
        return None;
    }
    let probe = Name::new(PROBE).ok()?;
    let (mut probes, mut candidates) = (0, 0);
    for (start, end) in value_runs(path) {
        let first = start.max(end.saturating_sub(MAX_ENCODED_HOST));
        for from in first..end {
            candidates += 1;
            if candidates > MAX_CANDIDATES {
                return None;
            }
            let candidate = path.get(from..end)?;
            if Host::decode(candidate) != Err(HostError::NumericName) {
                continue;
            }
            probes += 1;
            if probes > MAX_PROBES {
                return None;
            }
            let mut rewritten = Vec::with_capacity(path.len());
            rewritten.extend_from_slice(path.get(..from)?);
            rewritten.extend_from_slice(PROBE.as_bytes());
            rewritten.extend_from_slice(path.get(end..)?);
            match template.match_path(&rewritten) {
                Ok(target) if target.host == Host::Name(probe.clone()) => {
                    return Some((percent_decode(candidate)?, target.port));
                }
                _ => {}
            }
        }
    }
    None
}

/// Maximal runs of bytes a variable's value may hold, as `(start, end)`.
fn value_runs(path: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut at = 0;
    core::iter::from_fn(move || {
        let start = at + path.get(at..)?.iter().position(|&b| is_value_byte(b))?;
        let len = path
            .get(start..)?
            .iter()
            .position(|&b| !is_value_byte(b))
            .unwrap_or(path.len() - start);
        at = start + len;
        Some((start, at))
    })
}

/// RFC 3986 unreserved characters, and `%` of percent escapes.
fn is_value_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'%')
}

/// Percent-decodes ASCII text; `None` for a malformed escape or a non-ASCII result.
fn percent_decode(encoded: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(encoded.len());
    let mut bytes = encoded.iter();
    while let Some(&byte) = bytes.next() {
        let decoded = if byte == b'%' {
            let high = char::from(*bytes.next()?).to_digit(16)?;
            let low = char::from(*bytes.next()?).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()?
        } else {
            byte
        };
        if !decoded.is_ascii() {
            return None;
        }
        out.push(char::from(decoded));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(template: &PathTemplate<'_>, path: &str) -> Option<(String, u16)> {
        let error = template.match_path(path.as_bytes()).err()?;
        numeric_target(template, path.as_bytes(), error).map(|(host, port)| (host, port.get()))
    }

    #[test]
    fn finds_numeric_hosts_in_the_default_template() {
        let template = PathTemplate::DEFAULT;
        for (path, host) in [
            ("/.well-known/masque/udp/2130706433/53/", "2130706433"),
            ("/.well-known/masque/udp/0x7f.1/53/", "0x7f.1"),
            ("/.well-known/masque/udp/127.1/53/", "127.1"),
            ("/.well-known/masque/udp/1.2.3.4.5/53/", "1.2.3.4.5"),
            ("/.well-known/masque/udp/%32130706433/53/", "2130706433"),
        ] {
            assert_eq!(find(&template, path), Some((host.to_owned(), 53)), "{path}");
        }
    }

    #[test]
    fn finds_them_in_other_templates() {
        for (template, path) in [
            ("/udp-{target_host}/{target_port}", "/udp-2130706433/53"),
            ("/p/{target_port}/h/{target_host}", "/p/53/h/2130706433"),
            (
                "/m{?target_host,target_port}",
                "/m?target_host=2130706433&target_port=53",
            ),
            (
                "/m{?target_port,target_host}",
                "/m?target_port=53&target_host=2130706433",
            ),
        ] {
            let template = PathTemplate::new(template).expect("template");
            assert_eq!(
                find(&template, path),
                Some(("2130706433".to_owned(), 53)),
                "{path}"
            );
        }
    }

    #[test]
    fn other_errors_are_left_alone() {
        let template = PathTemplate::DEFAULT;
        for path in [
            "/.well-known/masque/udp/example.com/0/",
            "/.well-known/masque/udp/2130706433/0/",
            "/.well-known/masque/udp/exa%20mple/53/",
            "/elsewhere/2130706433/53/",
        ] {
            assert_eq!(find(&template, path), None, "{path}");
        }
    }

    #[test]
    fn a_hostile_path_costs_a_bounded_number_of_matches() {
        // Many numeric runs before the template's literal text fails: each suffix of each
        // run is a numeric name, but only `MAX_PROBES` matches are tried.
        let path = format!("/{}", "1.2/".repeat(2000));
        let template = PathTemplate::DEFAULT;
        let error = PathError::Host(HostError::NumericName);
        assert_eq!(numeric_target(&template, path.as_bytes(), error), None);
    }
}
