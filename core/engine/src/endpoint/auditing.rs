//! Edge: turning a tunnel's trail into its audit record (`crate::audit`).

use super::hooks::EdgeRequest;
use super::{Edge, Endpoint, Tunnel};
use crate::audit::{AUDIT_QUEUE, AuditRecord, Ending, Trail, millis, outcome_of};
use crate::config::Token;
use crate::rules::protocol_of;
use crate::types::{Refusal, TunnelId};

impl Endpoint {
    /// Edge: the next record of a finished tunnel, oldest first (`EdgeConfig::audit`).
    pub fn poll_audit(&mut self) -> Option<AuditRecord> {
        self.audit.pop_front()
    }

    /// Notes how a tunnel ends, for its record (the first note wins).
    pub(super) fn note_end(&mut self, id: TunnelId, ending: Ending) {
        if let Some(trail) = self.tunnels.get_mut(&id).and_then(|t| t.trail.as_mut()) {
            trail.end(ending);
        }
    }

    /// A trail for a new edge tunnel, when the edge keeps records.
    pub(super) fn new_trail(&self) -> Option<Box<Trail>> {
        match &self.role {
            super::RoleState::Edge(edge) if edge.audit => Some(Box::new(Trail::new(self.clock))),
            _ => None,
        }
    }

    /// Writes the record of a tunnel being removed.
    pub(super) fn audit_tunnel(&mut self, id: TunnelId, tunnel: &Tunnel) {
        let (Some(trail), Some(request)) = (tunnel.trail.as_deref(), tunnel.request.as_deref())
        else {
            return;
        };
        let super::RoleState::Edge(edge) = &self.role else {
            return;
        };
        let (outcome, status, proxy_error, error_code) = outcome_of(trail.ending);
        let record = AuditRecord {
            tunnel: Some(id.0),
            dialed: trail.dialed,
            bytes_from_client: trail.bytes_from_client,
            bytes_to_client: trail.bytes_to_client,
            datagrams_from_client: trail.datagrams_from_client,
            datagrams_to_client: trail.datagrams_to_client,
            duration_ms: millis(self.clock.saturating_duration_since(trail.started)),
            setup_ms: trail
                .opened
                .map(|at| millis(at.saturating_duration_since(trail.started))),
            outcome,
            status,
            proxy_error,
            error_code,
            ..base_record(edge, request)
        };
        self.push_audit(record);
    }

    /// Queues a record; a full queue drops it, counted.
    pub(super) fn push_audit(&mut self, record: AuditRecord) {
        if self.audit.len() >= AUDIT_QUEUE {
            self.stats.audit_dropped += 1;
            return;
        }
        self.audit.push_back(record);
    }
}

/// The record of a request the rules refused before it became a tunnel.
pub(super) fn audit_refused(edge: &Edge, request: &EdgeRequest, refusal: Refusal) -> AuditRecord {
    let (outcome, status, proxy_error, error_code) = outcome_of(Some(Ending::Refused(refusal)));
    AuditRecord {
        outcome,
        status,
        proxy_error,
        error_code,
        ..base_record(edge, request)
    }
}

/// What a record says of the request itself.
fn base_record(edge: &Edge, request: &EdgeRequest) -> AuditRecord {
    AuditRecord {
        tunnel: None,
        kind: match protocol_of(request.kind) {
            crate::rules::Protocol::Udp => "udp",
            crate::rules::Protocol::Ip => "ip",
            crate::rules::Protocol::Tcp => "tcp",
        },
        tenant: edge.tenant.as_deref().map(str::to_owned),
        client: request.client.peer,
        token: request
            .client
            .token_index
            .and_then(|index| edge.tokens.get(index))
            .map(|token: &Token| token.name().to_owned()),
        identity: request.certificate_identity.as_deref().map(str::to_owned),
        target: request.target.to_string(),
        sni: request.sni.as_deref().map(str::to_owned),
        dialed: None,
        tags: request.tags.iter().map(str::to_owned).collect(),
        bytes_from_client: 0,
        bytes_to_client: 0,
        datagrams_from_client: 0,
        datagrams_to_client: 0,
        duration_ms: 0,
        setup_ms: None,
        outcome: "refused",
        status: None,
        proxy_error: None,
        error_code: None,
    }
}
