//! The RFC 6570 URI-template engine that CONNECT-UDP (RFC 9298 §2) and CONNECT-IP
//! (RFC 9484 §3) share: validating a template's path and query once, splitting a
//! request's `:path` into raw values, and expanding values into a path.
//!
//! A [`VariableSet`] names each kind's variables and the forms it accepts. Literal text is
//! matched byte for byte; a variable's value runs to the byte that follows it in the
//! template, which its value cannot hold, or to the end. Each caller maps [`Error`] onto
//! its own public error enum.

use core::slice;

use super::percent::{decode_escape, is_unreserved};
use crate::cursor::Writer;
use crate::error::BufferTooSmall;

/// The variables one kind of template may hold, and the rules that come with them.
pub(super) trait VariableSet: Copy + Eq + 'static {
    /// Every variable, each named once.
    const ALL: &'static [Self];

    /// Whether lists `{a,b}` and the form-style operators `{?a}` and `{&a}` are accepted,
    /// beyond level-1 `{a}`.
    const QUERY_FORMS: bool;

    /// The variable's name as written in a template.
    fn name(self) -> &'static str;

    /// Whether an expanded value may hold `byte` as itself; a variable must be followed by
    /// a byte that it cannot. By default: the unreserved characters simple and form-style
    /// expansion copy as they are, and the `%` of escapes.
    fn in_value(byte: u8) -> bool {
        is_unreserved(byte) || byte == b'%'
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

/// One variable of a template: what precedes its value, and the literal text after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Slot<'a, V> {
    pub(super) variable: V,
    pub(super) lead: Lead,
    /// The literal text up to the next variable's lead, or to the end.
    pub(super) tail: &'a str,
}

impl<'a, V: VariableSet> Slot<'a, V> {
    /// A level-1 `{variable}` followed by `tail`.
    pub(super) const fn simple(variable: V, tail: &'a str) -> Self {
        Self {
            variable,
            lead: Lead::Nothing,
            tail,
        }
    }

    /// The bytes written before the value, in pieces, some of them empty.
    fn opening(&self) -> [&[u8]; 3] {
        match &self.lead {
            Lead::Nothing => [b"", b"", b""],
            Lead::Comma => [b",", b"", b""],
            Lead::Named(byte) => [slice::from_ref(byte), self.variable.name().as_bytes(), b"="],
        }
    }
}

/// A validated template's path and query: literal text and variables, stored as slices
/// of the template text. `N` is the number of variables, `V::ALL.len()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Layout<'a, V, const N: usize> {
    /// The literal text before the first variable (the whole template if it has none).
    pub(super) head: &'a str,
    /// The variables in template order, filled from the front.
    pub(super) slots: [Option<Slot<'a, V>>; N],
}

impl<'a, V: VariableSet, const N: usize> Layout<'a, V, N> {
    /// Reads a path-and-query template. `base` is where `text` starts in the text that
    /// error offsets count from. [`Scan::finish`] then checks the delimiters.
    pub(super) fn scan(text: &'a str, base: usize) -> Result<Scan<'a, V, N>, Error<V>> {
        const { assert!(N == V::ALL.len(), "one slot per variable") };
        let bytes = text.as_bytes();
        let mut scan = Scan {
            layout: Self {
                head: text,
                slots: [None; N],
            },
            tail_offsets: [0; N],
        };
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
                        .ok_or(ErrorKind::UnclosedExpression.at(offset))?;
                    let literal = text.get(literal_start..at).unwrap_or_default();
                    scan.literal(literal, base + literal_start);
                    scan.expression(text.get(at + 1..close).unwrap_or_default(), offset)?;
                    at = close + 1;
                    literal_start = at;
                }
                b'}' => return Err(ErrorKind::UnmatchedClosingBrace.at(offset)),
                b'#' => return Err(ErrorKind::Fragment.at(offset)),
                b'%' => {
                    decode_escape(bytes.get(at + 1..).unwrap_or_default())
                        .ok_or(ErrorKind::MalformedPercentEncoding.at(offset))?;
                    at += 3;
                }
                byte if is_literal(byte) => at += 1,
                _ => return Err(ErrorKind::InvalidCharacter.at(offset)),
            }
        }
        let literal = text.get(literal_start..).unwrap_or_default();
        scan.literal(literal, base + literal_start);
        Ok(scan)
    }

    /// Whether `variable` appears in the template.
    pub(super) fn has(&self, variable: V) -> bool {
        self.slots().any(|slot| slot.variable == variable)
    }

    /// Whether the template has a query: a `?` in its literal text or a `{?…}` expression.
    pub(super) fn has_query(&self) -> bool {
        self.head.contains('?')
            || self
                .slots()
                .any(|slot| slot.tail.contains('?') || slot.lead == Lead::Named(b'?'))
    }

    fn slots(&self) -> impl Iterator<Item = &Slot<'a, V>> {
        self.slots.iter().flatten()
    }

    /// Each variable with the byte that ends its value in an expanded path: the first
    /// byte of the literal after it or of the next variable's lead; `None` if nothing
    /// follows it.
    fn stops(&self) -> impl Iterator<Item = (&Slot<'a, V>, Option<u8>)> {
        let mut slots = self.slots().peekable();
        core::iter::from_fn(move || {
            let slot = slots.next()?;
            let next_lead = slots
                .peek()
                .and_then(|next| next.opening().into_iter().flatten().next());
            Some((slot, slot.tail.as_bytes().first().or(next_lead).copied()))
        })
    }

    /// Splits a request's `:path` into the still percent-encoded value of each variable,
    /// in [`VariableSet::ALL`] order, or returns the offset of the first byte where its
    /// literal text differs from the template's.
    pub(super) fn split<'p>(&self, path: &'p [u8]) -> Result<[Option<&'p [u8]>; N], usize> {
        let mut rest = Rest { input: path, at: 0 };
        rest.literal(self.head.as_bytes())?;
        let mut values = [None; N];
        for (slot, stop) in self.stops() {
            for piece in slot.opening() {
                rest.literal(piece)?;
            }
            let value = rest.value(stop);
            let index = V::ALL.iter().position(|&v| v == slot.variable);
            if let Some(entry) = index.and_then(|index| values.get_mut(index)) {
                *entry = Some(value);
            }
            rest.literal(slot.tail.as_bytes())?;
        }
        rest.end()?;
        Ok(values)
    }

    /// Writes the expansion to `sink`, asking `value` to write each variable's value,
    /// already percent-encoded.
    pub(super) fn emit(
        &self,
        sink: &mut dyn Sink,
        mut value: impl FnMut(V, &mut dyn Sink) -> Result<(), BufferTooSmall>,
    ) -> Result<(), BufferTooSmall> {
        sink.put(self.head.as_bytes())?;
        for slot in self.slots() {
            for piece in slot.opening() {
                sink.put(piece)?;
            }
            value(slot.variable, sink)?;
            sink.put(slot.tail.as_bytes())?;
        }
        Ok(())
    }
}

/// A template read by [`Layout::scan`] whose delimiters are not checked yet.
pub(super) struct Scan<'a, V, const N: usize> {
    layout: Layout<'a, V, N>,
    /// Where each slot's tail starts, for errors.
    tail_offsets: [usize; N],
}

impl<'a, V: VariableSet, const N: usize> Scan<'a, V, N> {
    /// The template as read so far.
    pub(super) const fn layout(&self) -> &Layout<'a, V, N> {
        &self.layout
    }

    /// Checks that every variable is followed by the end or by a byte its value cannot
    /// hold, and returns the validated template.
    pub(super) fn finish(self) -> Result<Layout<'a, V, N>, Error<V>> {
        let count = self.layout.slots().count();
        let stops = self.layout.stops().zip(self.tail_offsets).enumerate();
        for (index, ((slot, stop), offset)) in stops {
            let delimited = match stop {
                Some(byte) => !V::in_value(byte),
                None => index + 1 == count,
            };
            if !delimited {
                return Err(ErrorKind::UndelimitedVariable(slot.variable).at(offset));
            }
        }
        Ok(self.layout)
    }

    /// Records the literal text that starts at `offset` and ends at the next expression:
    /// the tail of the last variable so far, or the head.
    fn literal(&mut self, text: &'a str, offset: usize) {
        let last = self.layout.slots().count().checked_sub(1);
        match last.and_then(|index| self.layout.slots.get_mut(index)) {
            Some(Some(slot)) => slot.tail = text,
            _ => self.layout.head = text,
        }
        if let Some(tail_offset) = last.and_then(|index| self.tail_offsets.get_mut(index)) {
            *tail_offset = offset;
        }
    }

    /// Records the variables of the expression between braces at `offset`.
    fn expression(&mut self, expression: &str, offset: usize) -> Result<(), Error<V>> {
        let (operator, list) = split_operator(expression, offset)?;
        if !V::QUERY_FORMS && list.contains(',') {
            return Err(ErrorKind::UnsupportedOperator(b',').at(offset));
        }
        for (index, spec) in list.split(',').enumerate() {
            let variable = parse_varspec(spec, offset)?;
            let duplicate = ErrorKind::DuplicateVariable(variable).at(offset);
            if self.layout.has(variable) {
                return Err(duplicate);
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
            // Every variable appears once, so `N` slots, one per variable, are enough.
            let free = self.layout.slots.iter_mut().find(|slot| slot.is_none());
            *free.ok_or(duplicate)? = Some(Slot {
                variable,
                lead,
                tail: "",
            });
        }
        Ok(())
    }
}

/// Whether `byte` may appear as itself in a template's literal text.
//# RFC 9298 §2: "The URI Template MUST NOT contain any non-ASCII Unicode characters and
//# MUST only contain ASCII characters in the range 0x21-0x7E inclusive (note that
//# percent-encoding is allowed; see Section 2.1 of [URI])."
//# RFC 6570 §2.1: "literals = %x21 / %x23-24 / %x26 / %x28-3B / %x3D / %x3F-5B / %x5D
//# / %x5F / %x61-7A / %x7E / ucschar / iprivate / pct-encoded"
// `%`, `{`, `}` and `#` are handled by the caller: `#` is a literal to RFC 6570 but starts
// a fragment, which a request's :path never carries.
const fn is_literal(byte: u8) -> bool {
    matches!(
        byte,
        0x21 | 0x23..=0x24 | 0x26 | 0x28..=0x3B | 0x3D | 0x3F..=0x5B | 0x5D | 0x5F | 0x61..=0x7A | 0x7E
    )
}

/// Splits the operator, if any, off an expression's text.
fn split_operator<V: VariableSet>(
    expression: &str,
    offset: usize,
) -> Result<(Option<u8>, &str), Error<V>> {
    match expression.as_bytes().first() {
        None => Err(ErrorKind::EmptyExpression.at(offset)),
        Some(&operator @ (b'?' | b'&')) if V::QUERY_FORMS => {
            Ok((Some(operator), expression.get(1..).unwrap_or_default()))
        }
        //# RFC 9298 §2: "The URI Template MUST NOT use Reserved Expansion ("+"
        //# operator), Fragment Expansion ("#" operator), Label Expansion with
        //# Dot-Prefix, Path Segment Expansion with Slash-Prefix, nor Path-Style
        //# Parameter Expansion with Semicolon-Prefix."
        // RFC 9484 §3 says the same. `= , ! @ |` are reserved for future extensions by
        // RFC 6570 §2.2; `?` and `&` are refused here without QUERY_FORMS.
        Some(
            &operator @ (b'+' | b'#' | b'.' | b'/' | b';' | b'?' | b'&' | b'=' | b',' | b'!' | b'@'
            | b'|'),
        ) => Err(ErrorKind::UnsupportedOperator(operator).at(offset)),
        Some(_) => Ok((None, expression)),
    }
}

/// Reads one variable specifier: a known variable name with no modifier.
fn parse_varspec<V: VariableSet>(spec: &str, offset: usize) -> Result<V, Error<V>> {
    //# RFC 9298 §2: "The URI Template MUST be a level 3 template or lower."
    // Prefix (`:3`) and explode (`*`) modifiers are level 4.
    if spec.contains([':', '*']) {
        return Err(ErrorKind::UnsupportedModifier.at(offset));
    }
    // Told apart from other bad names: CONNECT-IP reports it as an unsupported expression.
    if spec.contains(['?', '&', '=', '!', '@', '|']) {
        return Err(ErrorKind::OperatorInName.at(offset));
    }
    if !is_varname(spec.as_bytes()) {
        return Err(ErrorKind::InvalidVariableName.at(offset));
    }
    V::ALL
        .iter()
        .copied()
        .find(|variable| variable.name() == spec)
        .ok_or(ErrorKind::UnknownVariable.at(offset))
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

/// Whether `text` is an RFC 3986 scheme.
//# RFC 3986 §3.1: "scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )"
pub(super) fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Why a template's path and query cannot be used, and where: bytes from the start of the
/// text given to [`Layout::scan`], plus its `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Error<V> {
    pub(super) kind: ErrorKind<V>,
    pub(super) offset: usize,
}

/// What is wrong. Errors inside an expression point at its `{`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorKind<V> {
    /// A byte RFC 6570 does not allow in literal text, or one outside 0x21–0x7E.
    InvalidCharacter,
    /// A `%` not followed by two hex digits.
    MalformedPercentEncoding,
    /// A `#`: a fragment has no place in a request's `:path`.
    Fragment,
    /// A `}` with no `{` before it.
    UnmatchedClosingBrace,
    /// A `{` with no `}` after it.
    UnclosedExpression,
    /// `{}`.
    EmptyExpression,
    /// An operator the RFCs forbid (`+ # . / ;`), one RFC 6570 reserves (`= , ! @ |`), or,
    /// without [`VariableSet::QUERY_FORMS`], `?`, `&` or a list's `,`.
    UnsupportedOperator(u8),
    /// A prefix (`:n`) or explode (`*`) modifier, which are level 4.
    UnsupportedModifier,
    /// An operator character after an expression's start, as in `{a?b}`: no RFC 6570
    /// form, and no `varname` either.
    OperatorInName,
    /// A name that is not RFC 6570 `varname`, such as an empty one.
    InvalidVariableName,
    /// A name outside [`VariableSet::ALL`].
    UnknownVariable,
    /// A variable that appears twice; the offset is the second one's.
    DuplicateVariable(V),
    /// A variable followed by text its value could contain; the offset is that text's.
    UndelimitedVariable(V),
}

impl<V> ErrorKind<V> {
    const fn at(self, offset: usize) -> Error<V> {
        Error { kind: self, offset }
    }
}

/// The part of a path not matched yet.
struct Rest<'p> {
    input: &'p [u8],
    at: usize,
}

impl<'p> Rest<'p> {
    fn unread(&self) -> &'p [u8] {
        self.input.get(self.at..).unwrap_or_default()
    }

    /// Consumes `literal`, or returns the offset of the first byte that differs.
    fn literal(&mut self, literal: &[u8]) -> Result<(), usize> {
        let unread = self.unread();
        if unread.starts_with(literal) {
            self.at += literal.len();
            return Ok(());
        }
        let same = unread
            .iter()
            .zip(literal)
            .take_while(|(a, b)| a == b)
            .count();
        Err(self.at + same)
    }

    /// Consumes a value up to `stop`, or to the end.
    fn value(&mut self, stop: Option<u8>) -> &'p [u8] {
        let unread = self.unread();
        let len = stop
            .and_then(|stop| unread.iter().position(|&b| b == stop))
            .unwrap_or(unread.len());
        self.at += len;
        unread.get(..len).unwrap_or_default()
    }

    fn end(&self) -> Result<(), usize> {
        if self.unread().is_empty() {
            Ok(())
        } else {
            Err(self.at)
        }
    }
}

/// Where expansion writes: a caller's buffer, or a counter that only measures.
pub(super) trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall>;
}

impl Sink for Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        self.bytes(bytes)
    }
}

/// Counts the bytes an expansion would write.
struct Counter(usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        self.0 += bytes.len();
        Ok(())
    }
}

/// The length of what `emit` writes.
pub(super) fn measure<E>(emit: impl FnOnce(&mut dyn Sink) -> Result<(), E>) -> Result<usize, E> {
    let mut counter = Counter(0);
    emit(&mut counter)?;
    Ok(counter.0)
}

/// Writes what `emit` writes to the front of `out`, returning its length. It is measured
/// first, so on [`BufferTooSmall`] nothing has been written.
pub(super) fn write_measured<E: From<BufferTooSmall>>(
    out: &mut [u8],
    emit: impl Fn(&mut dyn Sink) -> Result<(), E>,
) -> Result<usize, E> {
    let len = measure(&emit)?;
    let mut writer = Writer::new(out);
    writer.reserve(len)?;
    emit(&mut writer)?;
    Ok(writer.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three variables with every form, to exercise the engine beyond two.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Abc {
        A,
        B,
        C,
    }

    impl VariableSet for Abc {
        const ALL: &'static [Self] = &[Self::A, Self::B, Self::C];
        const QUERY_FORMS: bool = true;

        fn name(self) -> &'static str {
            match self {
                Self::A => "a",
                Self::B => "b",
                Self::C => "c",
            }
        }
    }

    /// One variable, level 1 only, whose values may hold `*`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Star;

    impl VariableSet for Star {
        const ALL: &'static [Self] = &[Self];
        const QUERY_FORMS: bool = false;

        fn name(self) -> &'static str {
            "s"
        }

        fn in_value(byte: u8) -> bool {
            is_unreserved(byte) || matches!(byte, b'*' | b'%')
        }
    }

    fn abc(text: &str) -> Result<Layout<'_, Abc, 3>, Error<Abc>> {
        Layout::scan(text, 0).and_then(Scan::finish)
    }

    fn star(text: &str) -> Result<Layout<'_, Star, 1>, Error<Star>> {
        Layout::scan(text, 0).and_then(Scan::finish)
    }

    #[test]
    fn splits_and_emits_every_form() {
        let layout = abc("/x/{c}/{?a,b}").unwrap();
        assert!(layout.has_query());
        let path = b"/x/3/?a=1&b=2";
        assert_eq!(
            layout.split(path),
            Ok([Some(&b"1"[..]), Some(&b"2"[..]), Some(&b"3"[..])])
        );
        let emit = |sink: &mut dyn Sink| {
            layout.emit(sink, |variable, sink| match variable {
                Abc::A => sink.put(b"1"),
                Abc::B => sink.put(b"2"),
                Abc::C => sink.put(b"3"),
            })
        };
        let mut out = [0xaa; 13];
        assert_eq!(write_measured(&mut out, emit), Ok(13));
        assert_eq!(&out, path);
        let mut short = [0xaa; 12];
        let too_small = BufferTooSmall {
            needed: 13,
            available: 12,
        };
        assert_eq!(write_measured(&mut short, emit), Err(too_small));
        assert_eq!(short, [0xaa; 12]);
    }

    #[test]
    fn absent_variables_have_no_value() {
        let layout = abc("/{b,a}").unwrap();
        assert!(!layout.has(Abc::C) && !layout.has_query());
        assert_eq!(
            layout.split(b"/2,1"),
            Ok([Some(&b"1"[..]), Some(&b"2"[..]), None])
        );
    }

    #[test]
    fn split_reports_the_first_differing_byte() {
        let layout = abc("/x/{a}/{&b}").unwrap();
        assert_eq!(layout.split(b"/y/1/&b=2"), Err(1));
        assert_eq!(layout.split(b"/x/1/&c=2"), Err(6));
        assert_eq!(layout.split(b"/x/1"), Err(4));
    }

    #[test]
    fn errors_name_their_kind_and_offset() {
        let cases: &[(&str, Error<Abc>)] = &[
            ("/a b", ErrorKind::InvalidCharacter.at(2)),
            ("/%4", ErrorKind::MalformedPercentEncoding.at(1)),
            ("/#", ErrorKind::Fragment.at(1)),
            ("/}", ErrorKind::UnmatchedClosingBrace.at(1)),
            ("/{a", ErrorKind::UnclosedExpression.at(1)),
            ("/{}", ErrorKind::EmptyExpression.at(1)),
            ("/{;a}", ErrorKind::UnsupportedOperator(b';').at(1)),
            ("/{a*}", ErrorKind::UnsupportedModifier.at(1)),
            ("/{a=b}", ErrorKind::OperatorInName.at(1)),
            ("/{a-b}", ErrorKind::InvalidVariableName.at(1)),
            ("/{d}", ErrorKind::UnknownVariable.at(1)),
            ("/{a}/{b,a}", ErrorKind::DuplicateVariable(Abc::A).at(5)),
            ("/{a}{b}", ErrorKind::UndelimitedVariable(Abc::A).at(4)),
            ("/{a}/{b}~", ErrorKind::UndelimitedVariable(Abc::B).at(8)),
        ];
        for (text, error) in cases {
            assert_eq!(abc(text), Err(*error), "{text:?}");
        }
    }

    #[test]
    fn the_variable_set_decides_forms_and_delimiters() {
        assert_eq!(
            star("/{?s}"),
            Err(ErrorKind::UnsupportedOperator(b'?').at(1))
        );
        assert_eq!(
            star("/{s,s}"),
            Err(ErrorKind::UnsupportedOperator(b',').at(1))
        );
        assert_eq!(
            star("/{s}*"),
            Err(ErrorKind::UndelimitedVariable(Star).at(4))
        );
        assert!(abc("/{a}*{b}").is_ok());
    }

    #[test]
    fn schemes_follow_rfc3986() {
        for scheme in ["https", "h", "coap+tcp", "a.b-c1"] {
            assert!(is_scheme(scheme), "{scheme}");
        }
        for scheme in ["", "1http", "ht_p", "-a"] {
            assert!(!is_scheme(scheme), "{scheme}");
        }
    }
}
