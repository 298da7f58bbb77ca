//! `veil_proto::masque::udp` on a template and a request path.
//!
//! Input: `template \n path`; without a line feed, the whole input is a path for RFC 9298's
//! default template. A template that validates displays as text that validates to the same
//! template; a path that matches gives a target that expands, under the same template, into
//! a path that matches to the same target; hosts and ports decoded on their own display as
//! text that parses back to them.

use veil_proto::masque::udp::{Host, PathTemplate, Target, UriTemplate, decode_port};

/// Validates the template, matches the path, and checks the round trips.
///
/// # Panics
///
/// When a round trip in the module documentation does not hold.
pub fn run(data: &[u8]) {
    let (template, path) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (Some(&data[..at]), &data[at + 1..]),
        None => (None, data),
    };
    check_host_and_port(path);
    let template = match template {
        None => PathTemplate::DEFAULT,
        Some(text) => {
            let Some(template) = core::str::from_utf8(text).ok().and_then(template_of) else {
                return;
            };
            template
        }
    };
    if let Ok(target) = template.match_path(path) {
        expand_and_match(&template, &target);
    }
}

/// A path template, or the path of a full URI template, from `text`.
fn template_of(text: &str) -> Option<PathTemplate<'_>> {
    if let Ok(template) = PathTemplate::new(text) {
        assert_eq!(template.as_str(), text);
        assert_eq!(PathTemplate::new(&template.to_string()), Ok(template));
        return Some(template);
    }
    let uri = UriTemplate::new(text).ok()?;
    assert_eq!(uri.as_str(), text);
    assert_eq!(
        format!(
            "{}://{}{}",
            uri.scheme(),
            uri.authority(),
            uri.path().as_str()
        ),
        text
    );
    assert_eq!(PathTemplate::new(uri.path().as_str()), Ok(uri.path()));
    Some(uri.path())
}

/// `target` expands under `template` into a path that matches back to it.
pub(crate) fn expand_and_match(template: &PathTemplate<'_>, target: &Target) {
    let len = template.expanded_len(target);
    let mut path = vec![0; len];
    assert_eq!(template.expand(target, &mut path), Ok(len));
    assert_eq!(
        template.match_path(&path).as_ref(),
        Ok(target),
        "{template} expanded {target} into {:?}",
        String::from_utf8_lossy(&path)
    );
    if len > 0 {
        assert!(template.expand(target, &mut path[..len - 1]).is_err());
    }
}

/// Hosts and ports decoded from a variable's value display as text that parses back.
fn check_host_and_port(value: &[u8]) {
    if let Ok(host) = Host::decode(value) {
        assert_eq!(host.to_string().parse::<Host>().as_ref(), Ok(&host));
    }
    if let Ok(port) = decode_port(value) {
        assert_eq!(decode_port(port.to_string().as_bytes()), Ok(port));
    }
}
