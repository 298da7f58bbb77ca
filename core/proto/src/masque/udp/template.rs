//! URI templates for CONNECT-UDP (RFC 9298 §2), validated once and stored without
//! allocation.

use core::fmt;

use super::percent::{decode_escape, is_unreserved};

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

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "target_host" => Some(Self::TargetHost),
            "target_port" => Some(Self::TargetPort),
            _ => None,
        }
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an expression writes before a variable's value (RFC 6570 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Lead {
    /// Nothing: the first variable of a simple expression, `{var}`.
    Nothing,
    /// `,`: a later variable of a simple expression, `{x,var}`.
    Comma,
    /// The byte, the variable's name and `=`: form-style `{?var}` (`?` first, `&` after)
    /// and `{&var}`.
    Named(u8),
}

/// One variable of a template, and what precedes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Slot {
    pub(super) variable: Variable,
    pub(super) lead: Lead,
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
    pub(super) prefix: &'a str,
    pub(super) first: Slot,
    pub(super) infix: &'a str,
    pub(super) second: Slot,
    pub(super) suffix: &'a str,
    pub(super) has_query: bool,
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
        prefix: "/.well-known/masque/udp/",
        first: Slot {
            variable: Variable::TargetHost,
            lead: Lead::Nothing,
        },
        infix: "/",
        second: Slot {
            variable: Variable::TargetPort,
            lead: Lead::Nothing,
        },
        suffix: "/",
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

    /// The byte that ends the first variable's value in an expanded path.
    ///
    /// Always present in a validated template.
    pub(super) fn first_stop(&self) -> Option<u8> {
        match (self.infix.as_bytes().first(), self.second.lead) {
            (Some(&byte), _) | (None, Lead::Named(byte)) => Some(byte),
            (None, Lead::Comma) => Some(b','),
            (None, Lead::Nothing) => None,
        }
    }

    /// The byte that ends the second variable's value, or `None` if it runs to the end.
    pub(super) fn second_stop(&self) -> Option<u8> {
        self.suffix.as_bytes().first().copied()
    }

    /// Parses `raw`, which starts `base` bytes into the text errors should point into.
    fn parse(raw: &'a str, base: usize) -> Result<Self, TemplateError> {
        let bytes = raw.as_bytes();
        if bytes.first() != Some(&b'/') {
            return Err(TemplateError::MissingLeadingSlash);
        }
        let mut parts = Parts::default();
        let mut literal_start = 0;
        let mut at = 0;
        while let Some(&byte) = bytes.get(at) {
            let offset = base + at;
            match byte {
                b'{' => {
                    let close = bytes
                        .get(at..)
                        .and_then(|rest| rest.iter().position(|&b| b == b'}'))
                        .map(|len| at + len)
                        .ok_or(TemplateError::UnclosedExpression { offset })?;
                    let literal = raw.get(literal_start..at).unwrap_or_default();
                    let expression = raw.get(at + 1..close).unwrap_or_default();
                    parts.literal(literal, base + literal_start);
                    parts.expression(expression, offset)?;
                    at = close + 1;
                    literal_start = at;
                }
                b'}' => return Err(TemplateError::UnmatchedClosingBrace { offset }),
                b'#' => return Err(TemplateError::Fragment { offset }),
                b'%' => {
                    decode_escape(bytes.get(at + 1..).unwrap_or_default())
                        .ok_or(TemplateError::MalformedPercentEncoding { offset })?;
                    at += 3;
                }
                byte if is_literal(byte) => at += 1,
                _ => return Err(TemplateError::InvalidCharacter { offset }),
            }
        }
        parts.literal(
            raw.get(literal_start..).unwrap_or_default(),
            base + literal_start,
        );
        parts.finish(raw)
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

/// Whether `byte` may appear as itself in a template's literal text.
//# RFC 9298 §2: "The URI Template MUST NOT contain any non-ASCII Unicode characters and
//# MUST only contain ASCII characters in the range 0x21-0x7E inclusive (note that
//# percent-encoding is allowed; see Section 2.1 of [URI])."
//# RFC 6570 §2.1: "literals = %x21 / %x23-24 / %x26 / %x28-3B / %x3D / %x3F-5B / %x5D
//# / %x5F / %x61-7A / %x7E / ucschar / iprivate / pct-encoded"
// `%`, `{` and `}` are handled by the caller; `#` is a literal to RFC 6570 but starts a
// fragment, which a request's :path never carries.
const fn is_literal(byte: u8) -> bool {
    matches!(
        byte,
        0x21 | 0x23..=0x24 | 0x26 | 0x28..=0x3B | 0x3D | 0x3F..=0x5B | 0x5D | 0x5F | 0x61..=0x7A | 0x7E
    )
}

/// The pieces of a template gathered while scanning it.
#[derive(Default)]
struct Parts<'a> {
    /// Literal text before, between and after the variables, with where each starts.
    literals: [(&'a str, usize); 3],
    /// The variables in template order.
    slots: [Option<Slot>; 2],
    /// How many slots are filled; also the index of the literal being gathered.
    count: usize,
    /// Whether a literal `?` or a `{?…}` expression starts a query.
    has_query: bool,
}

impl<'a> Parts<'a> {
    fn literal(&mut self, text: &'a str, offset: usize) {
        self.has_query |= text.contains('?');
        if let Some(literal) = self.literals.get_mut(self.count) {
            *literal = (text, offset);
        }
    }

    /// Records the variables of the expression between braces at `offset`.
    fn expression(&mut self, expression: &str, offset: usize) -> Result<(), TemplateError> {
        let (operator, list) = split_operator(expression, offset)?;
        self.has_query |= operator == Some(b'?');
        for (index, spec) in list.split(',').enumerate() {
            let variable = parse_varspec(spec, offset)?;
            if self.slots.iter().flatten().any(|s| s.variable == variable) {
                return Err(TemplateError::DuplicateVariable(variable));
            }
            let lead = match (operator, index) {
                (None, 0) => Lead::Nothing,
                (None, _) => Lead::Comma,
                (Some(b'?'), 0) => Lead::Named(b'?'),
                (Some(_), _) => Lead::Named(b'&'),
            };
            if index > 0 {
                // Variables of one expression have no literal between them.
                self.literal("", offset);
            }
            // Only two variables exist and neither repeats, so this slot is free.
            let slot = self
                .slots
                .get_mut(self.count)
                .ok_or(TemplateError::DuplicateVariable(variable))?;
            *slot = Some(Slot { variable, lead });
            self.count += 1;
        }
        Ok(())
    }

    fn finish(self, raw: &'a str) -> Result<PathTemplate<'a>, TemplateError> {
        let [first, second] = self.slots;
        let first = first.ok_or(TemplateError::MissingVariable(Variable::TargetHost))?;
        let missing = match first.variable {
            Variable::TargetHost => Variable::TargetPort,
            Variable::TargetPort => Variable::TargetHost,
        };
        let second = second.ok_or(TemplateError::MissingVariable(missing))?;
        let [(prefix, _), (infix, infix_at), (suffix, suffix_at)] = self.literals;
        let template = PathTemplate {
            raw,
            prefix,
            first,
            infix,
            second,
            suffix,
            has_query: self.has_query,
        };
        check_delimiter(template.first_stop(), first.variable, infix_at)?;
        if let Some(stop) = template.second_stop() {
            check_delimiter(Some(stop), second.variable, suffix_at)?;
        }
        Ok(template)
    }
}

/// Splits the operator, if any, off an expression's text.
fn split_operator(expression: &str, offset: usize) -> Result<(Option<u8>, &str), TemplateError> {
    match expression.as_bytes().first() {
        None => Err(TemplateError::EmptyExpression { offset }),
        //# RFC 9298 §2: "The URI Template MUST NOT use Reserved Expansion ("+"
        //# operator), Fragment Expansion ("#" operator), Label Expansion with
        //# Dot-Prefix, Path Segment Expansion with Slash-Prefix, nor Path-Style
        //# Parameter Expansion with Semicolon-Prefix."
        // `= , ! @ |` are reserved for future extensions by RFC 6570 §2.2.
        Some(&operator @ (b'+' | b'#' | b'.' | b'/' | b';' | b'=' | b',' | b'!' | b'@' | b'|')) => {
            Err(TemplateError::UnsupportedOperator { offset, operator })
        }
        Some(&operator @ (b'?' | b'&')) => {
            Ok((Some(operator), expression.get(1..).unwrap_or_default()))
        }
        Some(_) => Ok((None, expression)),
    }
}

/// Reads one variable specifier: a known variable name with no modifier.
fn parse_varspec(spec: &str, offset: usize) -> Result<Variable, TemplateError> {
    //# RFC 9298 §2: "The URI Template MUST be a level 3 template or lower."
    // Prefix (`:3`) and explode (`*`) modifiers are level 4.
    if spec.contains([':', '*']) {
        return Err(TemplateError::UnsupportedModifier { offset });
    }
    if !is_varname(spec.as_bytes()) {
        return Err(TemplateError::InvalidVariableName { offset });
    }
    Variable::from_name(spec).ok_or(TemplateError::UnknownVariable { offset })
}

/// Whether `name` matches RFC 6570's `varname`.
//# RFC 6570 §2.3: "varname = varchar *( ["."] varchar )"
//# RFC 6570 §2.3: "varchar = ALPHA / DIGIT / "_" / pct-encoded"
fn is_varname(name: &[u8]) -> bool {
    let mut at = 0;
    let mut after_varchar = false;
    while let Some(&byte) = name.get(at) {
        match byte {
            b'.' if after_varchar => {
                after_varchar = false;
                at += 1;
            }
            b'%' if decode_escape(name.get(at + 1..).unwrap_or_default()).is_some() => {
                after_varchar = true;
                at += 3;
            }
            byte if byte.is_ascii_alphanumeric() || byte == b'_' => {
                after_varchar = true;
                at += 1;
            }
            _ => return false,
        }
    }
    after_varchar
}

/// Fails unless `stop`, the byte after `variable`'s value, cannot occur in that value.
fn check_delimiter(
    stop: Option<u8>,
    variable: Variable,
    offset: usize,
) -> Result<(), TemplateError> {
    match stop {
        Some(byte) if !is_unreserved(byte) && byte != b'%' => Ok(()),
        _ => Err(TemplateError::UndelimitedVariable { variable, offset }),
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
        let scheme_len = scheme_len(bytes).ok_or(TemplateError::NotAbsolute)?;
        let authority_start = scheme_len + "://".len();
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
            scheme: template.get(..scheme_len).unwrap_or_default(),
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

/// The length of a scheme followed by `://`, or `None` if `bytes` does not start so.
//# RFC 3986 §3.1: "scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )"
fn scheme_len(bytes: &[u8]) -> Option<usize> {
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let len = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    bytes.get(len..)?.starts_with(b"://").then_some(len)
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
