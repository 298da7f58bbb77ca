//! URI templates for CONNECT-UDP (RFC 9298 §2), validated once and stored without
//! allocation.

use core::fmt;

use crate::masque::template::{self, Layout, Slot, VariableSet, is_scheme};

/// A variable RFC 9298 defines for its URI templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variable {
    /// `target_host`: the DNS name or IP address to send to.
    TargetHost,
    /// `target_port`: the UDP port to send to.
    TargetPort,
}

impl Variable {
    /// The variable's name as written in a template.
    pub const fn name(self) -> &'static str {
        match self {
            Self::TargetHost => "target_host",
            Self::TargetPort => "target_port",
        }
    }
}

impl VariableSet for Variable {
    const ALL: &'static [Self] = &[Self::TargetHost, Self::TargetPort];
    const QUERY_FORMS: bool = true;

    fn name(self) -> &'static str {
        Variable::name(self)
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The path-and-query part of a CONNECT-UDP URI template, e.g.
/// `/.well-known/masque/udp/{target_host}/{target_port}/` or
/// `/masque?h={target_host}&p={target_port}`.
///
/// The client expands it into a request's `:path` ([`expand`](Self::expand)); the proxy
/// matches a request's `:path` against it ([`match_path`](Self::match_path)).
///
/// # What is accepted
///
/// RFC 9298 §2 allows templates up to level 3 and rules out some operators; of what is
/// left, this type supports everything that can carry the two variables:
/// - simple expansion, `{target_host}` (level 1) and `{target_host,target_port}`;
/// - form-style query expansion, `{?target_host,target_port}` and `{&target_port}`.
///
/// Each of `target_host` and `target_port` appears exactly once. RFC 9298 allows other
/// variables, but veil has no value to give them and expanding them empty would send a
/// request the operator did not write, so they are refused. Literal text must be RFC 6570
/// literals in 0x21–0x7E, with well-formed percent escapes and no `#`.
///
/// A variable must be followed by the end of the template or by a character its value
/// cannot contain (anything but an unreserved character or `%`), so a `:path` splits into
/// values in exactly one way.
///
/// # How a `:path` is matched
///
/// Literal text is compared byte for byte, with no case folding or percent-decoding. A
/// variable's value runs to the next occurrence of the character that follows it in the
/// template, or to the end. When the template has no query (no `?` literal and no `{?…}`
/// expression), the request's query, if any, is ignored: it carries nothing the template
/// defines, and a proxy routes on the path. When the template has a query, the whole
/// query must match it, with nothing added.
///
/// The template is stored as borrowed slices of the text it was built from: no allocation,
/// and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PathTemplate<'a> {
    raw: &'a str,
    pub(super) layout: Layout<'a, Variable, 2>,
    has_query: bool,
}

/// The path of RFC 9298's default template.
//# RFC 9298 §2: "Client implementations of this specification that are constrained by
//# such limitations MAY attempt to access UDP proxying capabilities using the default
//# template, which is defined as "https://$PROXY_HOST:$PROXY_PORT/.well-known/masque/
//# udp/{target_host}/{target_port}/""
pub const DEFAULT_PATH_TEMPLATE: &str = "/.well-known/masque/udp/{target_host}/{target_port}/";

impl<'a> PathTemplate<'a> {
    /// RFC 9298's default template, [`DEFAULT_PATH_TEMPLATE`], already validated.
    pub const DEFAULT: PathTemplate<'static> = PathTemplate {
        raw: DEFAULT_PATH_TEMPLATE,
        layout: Layout {
            head: "/.well-known/masque/udp/",
            slots: [
                Some(Slot::simple(Variable::TargetHost, "/")),
                Some(Slot::simple(Variable::TargetPort, "/")),
            ],
        },
        has_query: false,
    };

    /// Validates a path-and-query template, which must start with `/`.
    pub fn new(template: &'a str) -> Result<Self, TemplateError> {
        Self::parse(template, 0)
    }

    /// The template text this was built from.
    pub const fn as_str(&self) -> &'a str {
        self.raw
    }

    /// Whether the template has a query component, and so matches a request's query too.
    pub const fn has_query(&self) -> bool {
        self.has_query
    }

    /// Parses `raw`, which starts `base` bytes into the text errors should point into.
    fn parse(raw: &'a str, base: usize) -> Result<Self, TemplateError> {
        if !raw.starts_with('/') {
            return Err(TemplateError::MissingLeadingSlash);
        }
        let scan = Layout::scan(raw, base).map_err(TemplateError::from_engine)?;
        let absent = Variable::ALL.iter().find(|&&v| !scan.layout().has(v));
        if let Some(&variable) = absent {
            return Err(TemplateError::MissingVariable(variable));
        }
        let layout = scan.finish().map_err(TemplateError::from_engine)?;
        Ok(Self {
            raw,
            layout,
            has_query: layout.has_query(),
        })
    }
}

impl Default for PathTemplate<'_> {
    /// RFC 9298's default template.
    fn default() -> Self {
        PathTemplate::DEFAULT
    }
}

impl fmt::Display for PathTemplate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// A full CONNECT-UDP URI template, e.g.
/// `https://proxy.example.org:4443/masque?h={target_host}&p={target_port}`.
///
/// The scheme and authority are literal (RFC 9298 §2 keeps variables in the path and
/// query); they become the request's `:scheme` and `:authority`. The path and query form a
/// [`PathTemplate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UriTemplate<'a> {
    raw: &'a str,
    scheme: &'a str,
    authority: &'a str,
    path: PathTemplate<'a>,
}

impl<'a> UriTemplate<'a> {
    /// Validates an absolute URI template against RFC 9298 §2.
    //# RFC 9298 §2: "The URI Template MUST be in absolute form and MUST include
    //# non-empty scheme, authority, and path components."
    //# RFC 9298 §2: "The path component of the URI Template MUST start with a slash
    //# ("/")."
    //# RFC 9298 §2: "All template variables MUST be within the path or query components
    //# of the URI."
    pub fn new(template: &'a str) -> Result<Self, TemplateError> {
        let bytes = template.as_bytes();
        let scheme = template
            .split_once("://")
            .map(|(scheme, _)| scheme)
            .filter(|scheme| is_scheme(scheme))
            .ok_or(TemplateError::NotAbsolute)?;
        let authority_start = scheme.len() + "://".len();
        let authority_len = bytes
            .get(authority_start..)
            .unwrap_or_default()
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(bytes.len() - authority_start);
        let path_start = authority_start + authority_len;
        let authority = template
            .get(authority_start..path_start)
            .unwrap_or_default();
        check_authority(authority, authority_start)?;
        if bytes.get(path_start) != Some(&b'/') {
            return Err(TemplateError::MissingPath);
        }
        Ok(Self {
            raw: template,
            scheme,
            authority,
            path: PathTemplate::parse(template.get(path_start..).unwrap_or_default(), path_start)?,
        })
    }

    /// The template text this was built from.
    pub const fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The scheme, for `:scheme`, e.g. `https`.
    pub const fn scheme(&self) -> &'a str {
        self.scheme
    }

    /// The authority, for `:authority`, e.g. `proxy.example.org:4443`.
    pub const fn authority(&self) -> &'a str {
        self.authority
    }

    /// The path-and-query template, for `:path`.
    pub const fn path(&self) -> PathTemplate<'a> {
        self.path
    }
}

impl fmt::Display for UriTemplate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

fn check_authority(authority: &str, start: usize) -> Result<(), TemplateError> {
    if authority.is_empty() {
        return Err(TemplateError::EmptyAuthority);
    }
    for (at, byte) in authority.bytes().enumerate() {
        let offset = start + at;
        match byte {
            b'{' | b'}' => return Err(TemplateError::VariableOutsidePathOrQuery { offset }),
            0x21..=0x7E => {}
            _ => return Err(TemplateError::InvalidCharacter { offset }),
        }
    }
    Ok(())
}

/// Why a URI template cannot be used for CONNECT-UDP.
///
/// RFC 9298 §2: "If a client detects that any of the requirements above are not met by a
/// URI Template, the client MUST reject its configuration and abort the request without
/// sending it to the UDP proxy." Offsets count bytes from the start of the template text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// A full template does not start with `scheme://`.
    NotAbsolute,
    /// A full template has an empty authority.
    EmptyAuthority,
    /// A full template has no path after its authority.
    MissingPath,
    /// A path template does not start with `/`.
    MissingLeadingSlash,
    /// A brace in the scheme or authority.
    VariableOutsidePathOrQuery {
        /// Where the brace is.
        offset: usize,
    },
    /// A character outside 0x21–0x7E, or one RFC 6570 does not allow in literal text.
    InvalidCharacter {
        /// Where the character is.
        offset: usize,
    },
    /// A `%` not followed by two hex digits.
    MalformedPercentEncoding {
        /// Where the `%` is.
        offset: usize,
    },
    /// A `#`: a fragment has no place in a request's `:path`.
    Fragment {
        /// Where the `#` is.
        offset: usize,
    },
    /// A `{` with no `}` after it.
    UnclosedExpression {
        /// Where the `{` is.
        offset: usize,
    },
    /// A `}` with no `{` before it.
    UnmatchedClosingBrace {
        /// Where the `}` is.
        offset: usize,
    },
    /// `{}`.
    EmptyExpression {
        /// Where the `{` is.
        offset: usize,
    },
    /// An operator RFC 9298 forbids (`+ # . / ;`) or RFC 6570 reserves (`= , ! @ |`).
    UnsupportedOperator {
        /// Where the expression's `{` is.
        offset: usize,
        /// The operator.
        operator: u8,
    },
    /// A prefix (`:n`) or explode (`*`) modifier, which are level 4.
    UnsupportedModifier {
        /// Where the expression's `{` is.
        offset: usize,
    },
    /// A variable name that is not RFC 6570 `varname`, such as an empty one.
    InvalidVariableName {
        /// Where the expression's `{` is.
        offset: usize,
    },
    /// A variable other than `target_host` and `target_port`.
    UnknownVariable {
        /// Where the expression's `{` is.
        offset: usize,
    },
    /// A variable that appears twice.
    DuplicateVariable(Variable),
    /// A variable that does not appear.
    MissingVariable(Variable),
    /// A variable followed by text its value could contain, so a path would not split
    /// into values in one way.
    UndelimitedVariable {
        /// The variable.
        variable: Variable,
        /// Where the text after it starts.
        offset: usize,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAbsolute => f.write_str("URI template does not start with scheme://"),
            Self::EmptyAuthority => f.write_str("URI template has an empty authority"),
            Self::MissingPath => f.write_str("URI template has no path"),
            Self::MissingLeadingSlash => f.write_str("URI template path does not start with '/'"),
            Self::VariableOutsidePathOrQuery { offset } => write!(
                f,
                "URI template has an expression outside its path and query at byte {offset}"
            ),
            Self::InvalidCharacter { offset } => {
                write!(
                    f,
                    "URI template has a character not allowed at byte {offset}"
                )
            }
            Self::MalformedPercentEncoding { offset } => write!(
                f,
                "URI template has a '%' not followed by two hex digits at byte {offset}"
            ),
            Self::Fragment { offset } => {
                write!(f, "URI template has a fragment ('#') at byte {offset}")
            }
            Self::UnclosedExpression { offset } => {
                write!(f, "URI template has an unclosed '{{' at byte {offset}")
            }
            Self::UnmatchedClosingBrace { offset } => {
                write!(f, "URI template has an unmatched '}}' at byte {offset}")
            }
            Self::EmptyExpression { offset } => {
                write!(f, "URI template has an empty expression at byte {offset}")
            }
            Self::UnsupportedOperator { offset, operator } => write!(
                f,
                "URI template uses the unsupported operator '{}' at byte {offset}",
                char::from(*operator)
            ),
            Self::UnsupportedModifier { offset } => write!(
                f,
                "URI template uses a prefix or explode modifier at byte {offset}"
            ),
            Self::InvalidVariableName { offset } => {
                write!(
                    f,
                    "URI template has an invalid variable name at byte {offset}"
                )
            }
            Self::UnknownVariable { offset } => write!(
                f,
                "URI template has a variable other than target_host and target_port at byte {offset}"
            ),
            Self::DuplicateVariable(variable) => {
                write!(f, "URI template has {variable} more than once")
            }
            Self::MissingVariable(variable) => write!(f, "URI template lacks {variable}"),
            Self::UndelimitedVariable { variable, offset } => write!(
                f,
                "URI template has {variable} followed at byte {offset} by text its value could contain"
            ),
        }
    }
}

impl core::error::Error for TemplateError {}

impl TemplateError {
    /// The CONNECT-UDP error for an error of the shared template engine.
    fn from_engine(template::Error { kind, offset }: template::Error<Variable>) -> Self {
        use template::ErrorKind as E;
        match kind {
            E::InvalidCharacter => Self::InvalidCharacter { offset },
            E::MalformedPercentEncoding => Self::MalformedPercentEncoding { offset },
            E::Fragment => Self::Fragment { offset },
            E::UnmatchedClosingBrace => Self::UnmatchedClosingBrace { offset },
            E::UnclosedExpression => Self::UnclosedExpression { offset },
            E::EmptyExpression => Self::EmptyExpression { offset },
            E::UnsupportedOperator(operator) => Self::UnsupportedOperator { offset, operator },
            E::UnsupportedModifier => Self::UnsupportedModifier { offset },
            E::OperatorInName | E::InvalidVariableName => Self::InvalidVariableName { offset },
            E::UnknownVariable => Self::UnknownVariable { offset },
            E::DuplicateVariable(variable) => Self::DuplicateVariable(variable),
            E::UndelimitedVariable(variable) => Self::UndelimitedVariable { variable, offset },
        }
    }
}
