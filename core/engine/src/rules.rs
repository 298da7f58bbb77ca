//! Routing rules that users configure: `[[rule]]` tables at the edge (allow, deny) and
//! `[[client.rule]]` tables at the client (tunnel, direct, block), first match wins.
//!
//! The matching itself is veil-proto's [`RuleSet`] (no allocation per lookup); this module
//! is the configuration's form of a rule ([`RuleSpec`], what TOML holds), its compilation
//! with errors that name the rule and the value, and the decisions the engine takes from a
//! match, once for every host:
//!
//! - **Edge** (`EdgeConfig::rules`): a request is matched on its target (the name as asked,
//!   and every address it resolves to), port, protocol and the name of the client's token.
//!   `deny` refuses it (403, `http_request_denied`); `allow` lets it through, also to an
//!   address the default egress policy forbids (a private network the operator opens on
//!   purpose); no match leaves the default egress policy to judge. A name is matched
//!   before it is resolved when no rule on addresses comes first (a refusal costs no DNS
//!   query), and each resolved address again with the name ([`crate::Endpoint::egress_for`]).
//! - **Client** ([`ClientRules`]): each new flow from SOCKS5, the HTTP proxy or a UDP
//!   forward goes through the tunnel (the default), directly from the client, or is
//!   refused. The client does not resolve names to decide: a `target` rule matches flows
//!   to IP literals; use `host` for names.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

pub use veil_proto::rules::{
    IpPrefix, NamePattern, PortRange, Protocol, ProtocolSet, Query, Rule, RuleSet,
};

use crate::types::{Host, TunnelKind, TunnelTarget};

/// What an edge rule does with the requests it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeAction {
    /// Serve it, even to an address the default egress policy forbids.
    Allow,
    /// Refuse it: 403, `http_request_denied`.
    Deny,
}

/// What a client rule does with the flows it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAction {
    /// Through the tunnel to the edge (what happens without rules).
    #[default]
    Tunnel,
    /// Straight from the client to the target, bypassing the edge.
    Direct,
    /// Refused at the client (SOCKS5 reply 0x02, HTTP 403).
    Block,
}

/// A port condition as TOML writes it: `443` or `"7100-7200"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    Number(u16),
    /// `"443"` or `"7100-7200"`.
    Text(String),
}

/// One rule as the configuration holds it. Every list is optional; an empty list sets no
/// condition (see the [module documentation](self) and veil-proto's `rules` for the exact
/// semantics).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec<A> {
    /// Destination prefixes: `"10.0.0.0/8"`, `"2001:db8::/32"`, a bare address.
    #[serde(default)]
    pub target: Vec<String>,
    /// Destination names: `"example.com"` exactly, `"*.example.com"` its subdomains.
    #[serde(default)]
    pub host: Vec<String>,
    /// Ports and inclusive ranges.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// `"tcp"`, `"udp"`, `"ip"`.
    #[serde(default)]
    pub protocol: Vec<String>,
    /// Edge: names of the tokens clients present.
    #[serde(default)]
    pub identity: Vec<String>,
    /// Server names a client's TLS asks for.
    #[serde(default)]
    pub sni: Vec<String>,
    /// Edge: the PROXY protocol header on TCP connections dialled for the requests this
    /// rule matches at the address dialled: `"v1"`, `"v2"`, or `"off"` (none, whatever
    /// `EdgeConfig::egress_proxy_protocol` says). Unset: the global setting. Not for client
    /// rules.
    #[serde(default)]
    pub proxy_protocol: Option<RuleProxyProtocol>,
    /// Edge: how long the tunnels this rule lets through may stay quiet, in milliseconds
    /// (`0`: as long as they like), instead of `QuicConfig::tcp_idle_timeout` or
    /// `udp_idle_timeout`. Judged on the request, when the tunnel opens. Not for client
    /// rules.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// Edge: the longest the tunnels this rule lets through live, in milliseconds (`0`: no
    /// limit), instead of `QuicConfig::tunnel_max_duration`. Not for client rules.
    #[serde(default)]
    pub max_duration_ms: Option<u64>,
    /// What the rule does.
    pub action: A,
}

/// A timeout a rule sets: none of its own (the global one holds), none at all, or its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Limit {
    #[default]
    Global,
    Never,
    After(Duration),
}

impl Limit {
    /// A rule's `..._ms` key: absent, `0` (no limit) or a limit.
    fn from_ms(ms: Option<u64>) -> Self {
        match ms {
            None => Self::Global,
            Some(0) => Self::Never,
            Some(ms) => Self::After(Duration::from_millis(ms)),
        }
    }

    /// The limit that holds, given the global one.
    pub(crate) fn or(self, global: Option<Duration>) -> Option<Duration> {
        match self {
            Self::Global => global,
            Self::Never => None,
            Self::After(limit) => Some(limit),
        }
    }
}

/// The timeouts an edge rule sets for the tunnels it matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RuleTimeouts {
    pub(crate) idle: Limit,
    pub(crate) max_duration: Limit,
}

impl RuleTimeouts {
    fn of<A>(spec: &RuleSpec<A>) -> Self {
        Self {
            idle: Limit::from_ms(spec.idle_timeout_ms),
            max_duration: Limit::from_ms(spec.max_duration_ms),
        }
    }
}

/// A rule's choice of PROXY protocol header toward origins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleProxyProtocol {
    /// No header, even if one is configured globally.
    Off,
    /// The text line.
    V1,
    /// The binary header.
    V2,
}

/// A rule that does not compile: which one (counted from 1, in the order written), which
/// field, which value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The rule's place in its list, from 1.
    pub rule: usize,
    /// The field.
    pub field: &'static str,
    /// The value as written.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {}: {} {:?}: {}",
            self.rule, self.field, self.value, self.reason
        )
    }
}

impl std::error::Error for RuleError {}

/// Compiles rules in the order written.
pub fn compile<A: Clone>(specs: &[RuleSpec<A>]) -> Result<RuleSet<A>, RuleError> {
    let rules = specs
        .iter()
        .enumerate()
        .map(|(index, spec)| spec.compile(index + 1))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RuleSet::new(rules))
}

/// Parses every text of one field.
fn parse_all<T: std::str::FromStr>(
    texts: &[String],
    field: &'static str,
    error: &dyn Fn(&'static str, &str, String) -> RuleError,
) -> Result<Vec<T>, RuleError>
where
    T::Err: fmt::Display,
{
    texts
        .iter()
        .map(|text| {
            text.parse()
                .map_err(|e: T::Err| error(field, text, e.to_string()))
        })
        .collect()
}

impl<A: Clone> RuleSpec<A> {
    fn compile(&self, rule: usize) -> Result<Rule<A>, RuleError> {
        let error = |field: &'static str, value: &str, reason: String| RuleError {
            rule,
            field,
            value: value.to_owned(),
            reason,
        };
        let ports = self
            .ports
            .iter()
            .map(|port| match port {
                PortSpec::Number(number) => PortRange::new(*number, *number)
                    .map_err(|e| error("ports", &number.to_string(), e.to_string())),
                PortSpec::Text(text) => {
                    text.parse()
                        .map_err(|e: <PortRange as std::str::FromStr>::Err| {
                            error("ports", text, e.to_string())
                        })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let protocols = if self.protocol.is_empty() {
            ProtocolSet::ALL
        } else {
            parse_all::<Protocol>(&self.protocol, "protocol", &error)?
                .into_iter()
                .collect()
        };
        Ok(Rule {
            targets: parse_all(&self.target, "target", &error)?,
            hosts: parse_all(&self.host, "host", &error)?,
            ports,
            protocols,
            identities: self.identity.clone(),
            snis: parse_all(&self.sni, "sni", &error)?,
            action: self.action.clone(),
        })
    }
}

/// The protocol rules see for a kind of tunnel.
pub(crate) fn protocol_of(kind: TunnelKind) -> Protocol {
    match kind {
        TunnelKind::Udp => Protocol::Udp,
        TunnelKind::Ip => Protocol::Ip,
        _ => Protocol::Tcp,
    }
}

/// The query for `target` (its address when it is one, else its name).
pub(crate) fn query_for<'a>(
    target: &'a TunnelTarget,
    protocol: Protocol,
    identity: Option<&'a str>,
    sni: Option<&'a str>,
) -> Query<'a> {
    let (addr, name) = match &target.host {
        Host::Ip(ip) => (Some(*ip), None),
        Host::Name(name) => (None, Some(name.as_str())),
    };
    Query {
        addr,
        name,
        port: target.port,
        protocol,
        identity,
        sni,
    }
}

/// What the rules say of a request before its target is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestRuling {
    /// The first matching rule's action, on what is known so far.
    pub(crate) action: Option<EdgeAction>,
    /// A rule on addresses comes before that match: only the resolved addresses decide.
    pub(crate) needs_address: bool,
    /// A rule on the server name (`sni`) comes before that match, and the request does not
    /// carry the name yet: only the tunnel's first bytes decide.
    pub(crate) needs_sni: bool,
}

/// The edge's rules, compiled, and the decisions it takes from them.
#[derive(Debug)]
pub(crate) struct EdgeRules {
    set: RuleSet<EdgeAction>,
    /// The first rule with an `sni` condition.
    first_sni_rule: Option<usize>,
    /// Each rule's `proxy_protocol`, by its place in `set`.
    proxy_protocol: Vec<Option<RuleProxyProtocol>>,
    /// Each rule's timeouts, by its place in `set`.
    timeouts: Vec<RuleTimeouts>,
}

impl EdgeRules {
    pub(crate) fn new(specs: &[RuleSpec<EdgeAction>]) -> Result<Self, RuleError> {
        let set = compile(specs)?;
        let first_sni_rule = set.rules().iter().position(|rule| !rule.snis.is_empty());
        Ok(Self {
            set,
            first_sni_rule,
            proxy_protocol: specs.iter().map(|spec| spec.proxy_protocol).collect(),
            timeouts: specs.iter().map(RuleTimeouts::of).collect(),
        })
    }

    /// The timeouts of the first rule that matches `query` (as the request names its
    /// target: a rule on addresses judges a name's tunnel by nothing it resolved to).
    pub(crate) fn timeouts_for(&self, query: &Query<'_>) -> RuleTimeouts {
        self.set
            .first_match(query)
            .and_then(|(index, _)| self.timeouts.get(index).copied())
            .unwrap_or_default()
    }

    /// The PROXY header choice of the first rule that matches `query` at `addr`, if that
    /// rule makes one (`None`: the global setting holds).
    pub(crate) fn proxy_protocol_at(
        &self,
        query: &Query<'_>,
        addr: IpAddr,
    ) -> Option<RuleProxyProtocol> {
        let query = Query {
            addr: Some(addr),
            ..*query
        };
        let (index, _) = self.set.first_match(&query)?;
        self.proxy_protocol.get(index).copied().flatten()
    }

    /// What the rules say of a request before anything is resolved. An answer is final
    /// when no rule that needs what is still unknown (the address, the server name) comes
    /// before the first match.
    pub(crate) fn on_request(&self, query: &Query<'_>) -> RequestRuling {
        let matched = self.set.first_match(query);
        let before = |rule: Option<usize>| {
            rule.is_some_and(|rule| matched.is_none_or(|(index, _)| rule < index))
        };
        RequestRuling {
            action: matched.map(|(_, action)| *action),
            needs_address: query.addr.is_none() && before(self.set.first_address_rule()),
            needs_sni: query.sni.is_none() && before(self.first_sni_rule),
        }
    }

    /// The verdict on one address a request's target resolved to (or is).
    pub(crate) fn on_address(&self, query: &Query<'_>, addr: IpAddr) -> Option<EdgeAction> {
        let query = Query {
            addr: Some(addr),
            ..*query
        };
        self.set.first_match(&query).map(|(_, action)| *action)
    }
}

/// A client's rules: how each new flow goes.
#[derive(Debug)]
pub struct ClientRules {
    set: RuleSet<ClientAction>,
}

impl ClientRules {
    /// Compiles `[[client.rule]]` tables.
    pub fn new(specs: &[RuleSpec<ClientAction>]) -> Result<Self, RuleError> {
        // Only an edge dials origins and times its tunnels: these would do nothing here.
        for (index, spec) in specs.iter().enumerate() {
            let edge_only = [
                (
                    "proxy_protocol",
                    spec.proxy_protocol.map(|v| format!("{v:?}")),
                    "only edge rules choose a PROXY header toward origins",
                ),
                (
                    "idle_timeout_ms",
                    spec.idle_timeout_ms.map(|v| v.to_string()),
                    "only edge rules time their tunnels",
                ),
                (
                    "max_duration_ms",
                    spec.max_duration_ms.map(|v| v.to_string()),
                    "only edge rules time their tunnels",
                ),
            ];
            if let Some((field, Some(value), reason)) =
                edge_only.into_iter().find(|(_, value, _)| value.is_some())
            {
                return Err(RuleError {
                    rule: index + 1,
                    field,
                    value,
                    reason: reason.to_owned(),
                });
            }
        }
        compile(specs).map(|set| Self { set })
    }

    /// How a flow to `target` over `protocol` goes: the first matching rule's action, or
    /// through the tunnel.
    pub fn route(&self, target: &TunnelTarget, protocol: Protocol) -> ClientAction {
        let query = query_for(target, protocol, None, None);
        self.set
            .first_match(&query)
            .map_or(ClientAction::Tunnel, |(_, action)| *action)
    }

    /// Whether there are no rules (every flow tunnels).
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}
