//! CONNECT-IP URI templates (RFC 9484 §3): validated once, then used to parse request paths
//! (proxy side) and to expand scopes into paths (client side).
//!
//! Only RFC 6570 level-1 simple expansion of the two variables `{target}` and `{ipproto}`
//! is supported, in the path or the query, each at most once. Matching a request path is
//! literal: the template's text must appear byte for byte, so query parameters keep the
//! template's order. Each variable must be followed by the end of the template or by a
//! literal starting with a character an expanded value never holds (anything but
//! `A-Z a-z 0-9 - . _ ~ * %`), so that a path splits into values one way only.

use core::fmt;

use super::scope::{
    IpProto, IpProtoError, Scope, Target, TargetError, expand_ipproto, expand_target,
    is_expansion_byte, parse_ipproto, parse_target,
};
use crate::error::BufferTooSmall;
use crate::masque::template::{
    self, Layout, Scan, Sink, Slot, VariableSet, is_scheme, measure, write_measured,
};

/// The default template's path (RFC 9484 §3), for clients only configured with a host and
/// a port.
pub const DEFAULT_TEMPLATE: &str = "/.well-known/masque/ip/{target}/{ipproto}/";

/// A template variable this module expands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Variable {
    Target,
    IpProto,
}

impl VariableSet for Variable {
    const ALL: &'static [Self] = &[Self::Target, Self::IpProto];
    const QUERY_FORMS: bool = false;

    fn name(self) -> &'static str {
        match self {
            Self::Target => "target",
            Self::IpProto => "ipproto",
        }
    }

    fn in_value(byte: u8) -> bool {
        is_expansion_byte(byte)
    }
}

/// A validated CONNECT-IP URI template, borrowing the configured text.
///
/// Built from either an absolute template (`https://proxy.example:4443/ip?t={target}&i={ipproto}`)
/// or just its path and query (`/ip?t={target}&i={ipproto}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    /// The path and query.
    layout: Layout<'a, Variable, 2>,
}

/// Why a URI template cannot be used. The client rejects its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// A byte outside 0x21–0x7E, one RFC 6570 forbids in literals, a `#` (the path and
    /// query cannot hold a fragment), or a `%` not starting a percent escape.
    InvalidCharacter {
        /// Byte offset in the template.
        position: usize,
    },
    /// Neither `scheme://authority/path` nor a path starting with `/`.
    NotAbsolute,
    /// The scheme is not `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
    InvalidScheme,
    /// The authority is empty.
    EmptyAuthority,
    /// Nothing follows the authority, or a query comes before any path.
    MissingPath,
    /// A variable in the scheme or authority.
    VariableOutsidePathOrQuery,
    /// A `{` without its `}`.
    UnclosedExpression {
        /// Byte offset of the `{`.
        position: usize,
    },
    /// An operator RFC 9484 §3 forbids: `+`, `#`, `.`, `/` or `;`.
    ForbiddenOperator {
        /// The operator.
        operator: char,
        /// Byte offset of the `{`.
        position: usize,
    },
    /// An expression beyond level-1 `{name}`: another operator, a list or a modifier.
    UnsupportedExpression {
        /// Byte offset of the `{`.
        position: usize,
    },
    /// A variable other than `target` and `ipproto`, which this module cannot fill in.
    UnknownVariable {
        /// Byte offset of the `{`.
        position: usize,
    },
    /// A variable used twice.
    DuplicateVariable {
        /// Byte offset of the second `{`.
        position: usize,
    },
    /// A variable followed by another or by text an expanded value could hold, so a path
    /// would not split into values one way only.
    AmbiguousBoundary,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCharacter { position } => {
                write!(
                    f,
                    "invalid character at byte {position} of the URI template"
                )
            }
            Self::NotAbsolute => f.write_str("URI template is neither absolute nor a path"),
            Self::InvalidScheme => f.write_str("URI template has an invalid scheme"),
            Self::EmptyAuthority => f.write_str("URI template has an empty authority"),
            Self::MissingPath => f.write_str("URI template has no path"),
            Self::VariableOutsidePathOrQuery => {
                f.write_str("URI template has a variable outside the path and query")
            }
            Self::UnclosedExpression { position } => {
                write!(
                    f,
                    "unclosed expression at byte {position} of the URI template"
                )
            }
            Self::ForbiddenOperator { operator, position } => write!(
                f,
                "operator {operator:?} at byte {position} of the URI template is forbidden"
            ),
            Self::UnsupportedExpression { position } => write!(
                f,
                "expression at byte {position} of the URI template is not a simple variable"
            ),
            Self::UnknownVariable { position } => write!(
                f,
                "variable at byte {position} of the URI template is neither target nor ipproto"
            ),
            Self::DuplicateVariable { position } => {
                write!(
                    f,
                    "variable at byte {position} of the URI template is repeated"
                )
            }
            Self::AmbiguousBoundary => {
                f.write_str("URI template variable is not followed by a clear delimiter")
            }
        }
    }
}

impl core::error::Error for TemplateError {}

/// Why a request path does not give a valid scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeError {
    /// The path does not have the template's shape: not a request for this template.
    NoMatch,
    /// The path matches, but `target` is malformed: the request is malformed.
    Target(TargetError),
    /// The path matches, but `ipproto` is malformed: the request is malformed.
    IpProto(IpProtoError),
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMatch => f.write_str("request path does not match the URI template"),
            Self::Target(e) => e.fmt(f),
            Self::IpProto(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for ScopeError {}

/// Why a scope cannot be expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpandError {
    /// The scope names a target but the template has no `{target}`: expanding would widen
    /// the request to any host.
    TargetNotInTemplate,
    /// The scope names a protocol but the template has no `{ipproto}`.
    IpProtoNotInTemplate,
    /// The output buffer is too small.
    BufferTooSmall(BufferTooSmall),
}

impl From<BufferTooSmall> for ExpandError {
    fn from(e: BufferTooSmall) -> Self {
        Self::BufferTooSmall(e)
    }
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TargetNotInTemplate => f.write_str("URI template has no {target} variable"),
            Self::IpProtoNotInTemplate => f.write_str("URI template has no {ipproto} variable"),
            Self::BufferTooSmall(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for ExpandError {}

impl Template<'static> {
    /// The default template, [`DEFAULT_TEMPLATE`].
    pub const DEFAULT: Self = Self {
        scheme: None,
        authority: None,
        layout: Layout {
            head: "/.well-known/masque/ip/",
            slots: [
                Some(Slot::simple(Variable::Target, "/")),
                Some(Slot::simple(Variable::IpProto, "/")),
            ],
        },
    };
}

impl Default for Template<'static> {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl<'a> Template<'a> {
    /// Validates `template` against RFC 9484 §3 and this module's limits (see the module
    /// documentation).
    pub fn new(template: &'a str) -> Result<Self, TemplateError> {
        //# RFC 9484 §3: "The URI Template MUST NOT contain any non-ASCII Unicode characters
        //# and MUST only contain ASCII characters in the range 0x21-0x7E inclusive"
        if let Some(position) = template.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(TemplateError::InvalidCharacter { position });
        }
        let (scheme, authority, path) = split_origin(template)?;
        let offset = template.len() - path.len();
        let layout = Layout::scan(path, offset)
            .and_then(Scan::finish)
            .map_err(TemplateError::from_engine)?;
        Ok(Self {
            scheme,
            authority,
            layout,
        })
    }

    /// The scheme of an absolute template.
    pub const fn scheme(&self) -> Option<&'a str> {
        self.scheme
    }

    /// The authority (host and optional port) of an absolute template.
    pub const fn authority(&self) -> Option<&'a str> {
        self.authority
    }

    /// Whether the template has a `{target}` variable.
    pub fn has_target(&self) -> bool {
        self.layout.has(Variable::Target)
    }

    /// Whether the template has an `{ipproto}` variable.
    pub fn has_ipproto(&self) -> bool {
        self.layout.has(Variable::IpProto)
    }

    /// Extracts and validates the scope from a request's path and query (`:path`).
    ///
    /// [`ScopeError::NoMatch`] means the path is not of this template's shape; the other
    /// errors mean it is, but a value is malformed, and RFC 9484 §4.1 makes the request
    /// malformed.
    pub fn parse(&self, path: &[u8]) -> Result<Scope, ScopeError> {
        let [target, ipproto] = self.layout.split(path).map_err(|_| ScopeError::NoMatch)?;
        //# RFC 9484 §4.1: "IP proxies MUST validate whether the decoded "target" and
        //# "ipproto" variables meet the requirements in Section 4.6. If they do not, the IP
        //# proxy MUST treat the request as malformed"
        let target = target
            .map_or(Ok(Target::Any), parse_target)
            .map_err(ScopeError::Target)?;
        let ipproto = ipproto
            .map_or(Ok(IpProto::Any), parse_ipproto)
            .map_err(ScopeError::IpProto)?;
        Ok(Scope { target, ipproto })
    }

    /// Writes the path and query for `scope` into `out`, returning its length.
    ///
    /// `*` is written unencoded, as in RFC 9484's examples (`/.well-known/masque/ip/*/*/`);
    /// IPv6 colons and the prefix slash are percent-encoded as §4.6 requires.
    pub fn expand(&self, scope: &Scope, out: &mut [u8]) -> Result<usize, ExpandError> {
        write_measured(out, |sink| self.write_expansion(scope, sink))
    }

    /// Bytes [`Template::expand`] writes for `scope`.
    pub fn expanded_len(&self, scope: &Scope) -> Result<usize, ExpandError> {
        measure(|sink| self.write_expansion(scope, sink))
    }

    fn write_expansion(&self, scope: &Scope, sink: &mut dyn Sink) -> Result<(), ExpandError> {
        if scope.target != Target::Any && !self.has_target() {
            return Err(ExpandError::TargetNotInTemplate);
        }
        if scope.ipproto != IpProto::Any && !self.has_ipproto() {
            return Err(ExpandError::IpProtoNotInTemplate);
        }
        self.layout.emit(sink, |variable, sink| match variable {
            Variable::Target => expand_target(&scope.target, sink),
            Variable::IpProto => expand_ipproto(scope.ipproto, sink),
        })?;
        Ok(())
    }
}

/// Splits an absolute template into scheme, authority and path-and-query; a template that
/// starts with `/` is a path and query alone.
#[allow(clippy::type_complexity)] // A one-off triple, named by the destructuring caller.
fn split_origin(template: &str) -> Result<(Option<&str>, Option<&str>, &str), TemplateError> {
    if template.starts_with('/') {
        return Ok((None, None, template));
    }
    //# RFC 9484 §3: "The URI Template MUST be in absolute form and MUST include non-empty
    //# scheme, authority, and path components."
    let (scheme, rest) = template
        .split_once("://")
        .ok_or(TemplateError::NotAbsolute)?;
    if !is_scheme(scheme) {
        return Err(TemplateError::InvalidScheme);
    }
    //# RFC 9484 §3: "The path component of the URI Template MUST start with a slash "/"."
    let slash = rest.find('/').ok_or(TemplateError::MissingPath)?;
    let (authority, path) = rest
        .split_at_checked(slash)
        .ok_or(TemplateError::MissingPath)?;
    if authority.is_empty() {
        return Err(TemplateError::EmptyAuthority);
    }
    //# RFC 9484 §3: "All template variables MUST be within the path or query components
    //# of the URI."
    if authority.contains(['{', '}']) {
        return Err(TemplateError::VariableOutsidePathOrQuery);
    }
    if authority.contains(['?', '#']) {
        return Err(TemplateError::MissingPath);
    }
    Ok((Some(scheme), Some(authority), path))
}

impl TemplateError {
    /// The CONNECT-IP error for an error of the shared template engine.
    fn from_engine(error: template::Error<Variable>) -> Self {
        use template::ErrorKind as E;
        let position = error.offset;
        match error.kind {
            // RFC 6570 forbids these in literals, and a fragment never reaches the request.
            E::InvalidCharacter
            | E::MalformedPercentEncoding
            | E::Fragment
            | E::UnmatchedClosingBrace => Self::InvalidCharacter { position },
            E::UnclosedExpression => Self::UnclosedExpression { position },
            // The operators RFC 9484 §3 forbids by name.
            E::UnsupportedOperator(operator @ (b'+' | b'#' | b'.' | b'/' | b';')) => {
                let operator = char::from(operator);
                Self::ForbiddenOperator { operator, position }
            }
            E::EmptyExpression
            | E::UnsupportedOperator(_)
            | E::UnsupportedModifier
            | E::OperatorInName => Self::UnsupportedExpression { position },
            E::InvalidVariableName | E::UnknownVariable => Self::UnknownVariable { position },
            E::DuplicateVariable(_) => Self::DuplicateVariable { position },
            E::UndelimitedVariable(_) => Self::AmbiguousBoundary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masque::ip::{Hostname, IpPrefix};

    fn parse(template: &str, path: &str) -> Result<Scope, ScopeError> {
        Template::new(template).unwrap().parse(path.as_bytes())
    }

    fn expand(template: &Template<'_>, scope: &Scope) -> std::string::String {
        let mut buf = [0; 512];
        let len = template.expand(scope, &mut buf).unwrap();
        assert_eq!(template.expanded_len(scope), Ok(len));
        std::string::String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    fn name(text: &str) -> Target {
        Target::Name(Hostname::new(text).unwrap())
    }

    #[test]
    fn default_template_matches_its_text() {
        assert_eq!(Template::new(DEFAULT_TEMPLATE), Ok(Template::DEFAULT));
        assert_eq!(Template::default(), Template::DEFAULT);
    }

    /// RFC 9484 §4.2 and §4.4, Figures 2 and 4: `/.well-known/masque/ip/*/*/`.
    #[test]
    fn rfc_full_tunnel_request() {
        let scope = Template::DEFAULT
            .parse(b"/.well-known/masque/ip/*/*/")
            .unwrap();
        assert_eq!(scope, Scope::ANY);
        assert_eq!(
            expand(&Template::DEFAULT, &Scope::ANY),
            "/.well-known/masque/ip/*/*/"
        );
    }

    /// RFC 9484 §8.3: `/proxy?target=target.example.com&ipproto=132`, written here with a
    /// level-1 template (the RFC's own uses `{?target,ipproto}`, a level-3 form).
    #[test]
    fn rfc_flow_forwarding_request() {
        let template = Template::new("/proxy?target={target}&ipproto={ipproto}").unwrap();
        let scope = template
            .parse(b"/proxy?target=target.example.com&ipproto=132")
            .unwrap();
        let expected = Scope {
            target: name("target.example.com"),
            ipproto: IpProto::Number(132),
        };
        assert_eq!(scope, expected);
        assert_eq!(
            expand(&template, &expected),
            "/proxy?target=target.example.com&ipproto=132"
        );
    }

    /// RFC 9484 §3, Figure 1, second example, with an IPv6 prefix target.
    #[test]
    fn absolute_query_template() {
        let template =
            Template::new("https://proxy.example.org:4443/masque/ip?t={target}&i={ipproto}")
                .unwrap();
        assert_eq!(template.scheme(), Some("https"));
        assert_eq!(template.authority(), Some("proxy.example.org:4443"));
        let scope = Scope {
            target: Target::Prefix(IpPrefix::new("2001:db8::".parse().unwrap(), 32).unwrap()),
            ipproto: IpProto::Number(17),
        };
        let path = expand(&template, &scope);
        assert_eq!(path, "/masque/ip?t=2001%3Adb8%3A%3A%2F32&i=17");
        assert_eq!(template.parse(path.as_bytes()), Ok(scope));
    }

    /// RFC 9484 §3, Figure 1, last example: no variables at all means a wildcard scope.
    #[test]
    fn template_without_variables() {
        let template = Template::new("https://masque.example.org/?user=bob").unwrap();
        assert_eq!(template.parse(b"/?user=bob"), Ok(Scope::ANY));
        assert_eq!(template.parse(b"/?user=eve"), Err(ScopeError::NoMatch));
        let scope = Scope {
            target: Target::Any,
            ipproto: IpProto::Number(6),
        };
        assert_eq!(
            template.expand(&scope, &mut [0; 64]),
            Err(ExpandError::IpProtoNotInTemplate)
        );
        let scope = Scope {
            target: name("example.com"),
            ipproto: IpProto::Any,
        };
        assert_eq!(
            template.expand(&scope, &mut [0; 64]),
            Err(ExpandError::TargetNotInTemplate)
        );
    }

    #[test]
    fn missing_variable_is_a_wildcard() {
        let template = Template::new("/ip/{target}").unwrap();
        assert_eq!(
            template.parse(b"/ip/192.0.2.1"),
            Ok(Scope {
                target: Target::Prefix(IpPrefix::host("192.0.2.1".parse().unwrap())),
                ipproto: IpProto::Any,
            })
        );
    }

    #[test]
    fn paths_of_another_shape_do_not_match() {
        let t = DEFAULT_TEMPLATE;
        assert_eq!(
            parse(t, "/.well-known/masque/udp/*/*/"),
            Err(ScopeError::NoMatch)
        );
        assert_eq!(
            parse(t, "/.well-known/masque/ip/*/*"),
            Err(ScopeError::NoMatch)
        );
        assert_eq!(
            parse(t, "/.well-known/masque/ip/*/*/x"),
            Err(ScopeError::NoMatch)
        );
        assert_eq!(
            parse(t, "/.well-known/masque/ip/*/*/?q"),
            Err(ScopeError::NoMatch)
        );
        // A raw slash in the target splits it into too many segments.
        assert_eq!(
            parse(t, "/.well-known/masque/ip/10.0.0.0/8/6/"),
            Err(ScopeError::NoMatch)
        );
        assert_eq!(parse(t, ""), Err(ScopeError::NoMatch));
    }

    #[test]
    fn malformed_values_are_reported_per_variable() {
        let t = DEFAULT_TEMPLATE;
        assert_eq!(
            parse(t, "/.well-known/masque/ip//*/"),
            Err(ScopeError::Target(TargetError::Empty))
        );
        assert_eq!(
            parse(t, "/.well-known/masque/ip/*//"),
            Err(ScopeError::IpProto(IpProtoError::Empty))
        );
        assert_eq!(
            parse(t, "/.well-known/masque/ip/2001:db8::1/*/"),
            Err(ScopeError::Target(TargetError::ForbiddenCharacter(b':')))
        );
        assert_eq!(
            parse(t, "/.well-known/masque/ip/*/256/"),
            Err(ScopeError::IpProto(IpProtoError::OutOfRange(256)))
        );
        assert_eq!(
            parse(t, "/.well-known/masque/ip/192.0.2.1%2F24/*/"),
            Err(ScopeError::Target(TargetError::HostBitsSet))
        );
    }

    #[test]
    fn expand_reports_buffer_too_small_without_writing() {
        let mut buf = [0xaa; 10];
        assert_eq!(
            Template::DEFAULT.expand(&Scope::ANY, &mut buf),
            Err(ExpandError::BufferTooSmall(BufferTooSmall {
                needed: 27,
                available: 10
            }))
        );
        assert_eq!(buf, [0xaa; 10]);
    }

    #[test]
    fn refuses_characters_outside_0x21_to_0x7e() {
        assert_eq!(
            Template::new("/ip /{target}"),
            Err(TemplateError::InvalidCharacter { position: 3 })
        );
        assert_eq!(
            Template::new("/ïp/{target}"),
            Err(TemplateError::InvalidCharacter { position: 1 })
        );
    }

    #[test]
    fn refuses_characters_rfc6570_forbids_in_literals() {
        for (template, position) in [
            ("/ip/\"{target}", 4),
            ("/ip/<{target}", 4),
            ("/ip/^/{target}", 4),
            ("/ip/|/{target}", 4),
            ("/ip/}/{target}", 4),
            ("/ip/{target}#frag", 12),
            ("/ip/%2/{target}", 4),
            ("/ip/%zz/{target}", 4),
        ] {
            assert_eq!(
                Template::new(template),
                Err(TemplateError::InvalidCharacter { position }),
                "{template}"
            );
        }
        assert!(Template::new("/ip/%2F/{target}").is_ok());
    }

    #[test]
    fn refuses_non_absolute_templates() {
        assert_eq!(
            Template::new("ip/{target}"),
            Err(TemplateError::NotAbsolute)
        );
        assert_eq!(Template::new(""), Err(TemplateError::NotAbsolute));
    }

    #[test]
    fn refuses_bad_schemes() {
        assert_eq!(
            Template::new("://h/{target}"),
            Err(TemplateError::InvalidScheme)
        );
        assert_eq!(
            Template::new("1ttp://h/{target}"),
            Err(TemplateError::InvalidScheme)
        );
        assert_eq!(
            Template::new("ht_p://h/{target}"),
            Err(TemplateError::InvalidScheme)
        );
    }

    #[test]
    fn refuses_empty_authority() {
        assert_eq!(
            Template::new("https:///ip/{target}"),
            Err(TemplateError::EmptyAuthority)
        );
    }

    #[test]
    fn refuses_missing_path() {
        assert_eq!(Template::new("https://h"), Err(TemplateError::MissingPath));
        assert_eq!(
            Template::new("https://h?t={target}"),
            Err(TemplateError::MissingPath)
        );
    }

    #[test]
    fn refuses_variables_in_authority() {
        assert_eq!(
            Template::new("https://{target}/ip"),
            Err(TemplateError::VariableOutsidePathOrQuery)
        );
    }

    #[test]
    fn refuses_unclosed_expressions() {
        assert_eq!(
            Template::new("/ip/{target"),
            Err(TemplateError::UnclosedExpression { position: 4 })
        );
    }

    #[test]
    fn refuses_forbidden_operators() {
        for operator in ['+', '#', '.', '/', ';'] {
            let template = std::format!("https://h/ip{{{operator}target}}");
            assert_eq!(
                Template::new(&template),
                Err(TemplateError::ForbiddenOperator {
                    operator,
                    position: 12
                })
            );
        }
    }

    #[test]
    fn refuses_expressions_beyond_level_1() {
        for template in [
            "/ip{?target,ipproto}",
            "/ip?x=1{&target}",
            "/ip/{target,ipproto}",
            "/ip/{target:3}",
            "/ip/{target*}",
            "/ip/{}",
        ] {
            assert!(
                matches!(
                    Template::new(template),
                    Err(TemplateError::UnsupportedExpression { .. })
                ),
                "{template}"
            );
        }
    }

    #[test]
    fn refuses_unknown_variables() {
        assert_eq!(
            Template::new("/ip/{target}/{user}/"),
            Err(TemplateError::UnknownVariable { position: 13 })
        );
    }

    #[test]
    fn refuses_duplicate_variables() {
        assert_eq!(
            Template::new("/ip/{target}/{target}/"),
            Err(TemplateError::DuplicateVariable { position: 13 })
        );
        assert_eq!(
            Template::new("/ip/{target}/{ipproto}/{ipproto}"),
            Err(TemplateError::DuplicateVariable { position: 23 })
        );
    }

    #[test]
    fn refuses_ambiguous_boundaries() {
        for template in [
            "/ip/{target}{ipproto}",
            "/ip/{target}.x/{ipproto}",
            "/ip/{target}%2F{ipproto}",
            "/ip/{ipproto}-x",
        ] {
            assert_eq!(
                Template::new(template),
                Err(TemplateError::AmbiguousBoundary),
                "{template}"
            );
        }
        assert!(Template::new("/ip/{target}&{ipproto}").is_ok());
    }
}
