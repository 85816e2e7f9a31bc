/*!
Every reason the gateway refuses a request, in one table: each [`RefusalKind`] knows its HTTP
status and its machine-readable code (also the `reason` label of
`partner_gateway_requests_refused_total`); a [`Refusal`] adds the human message that goes
into the JSON error body ([`error_body`], the one shape of every JSON error the gateway sends).
*/

/// Why a request was refused: the row of the refusal table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    BadRequest,
    Unauthenticated,
    CallerNotAllowed,
    RouteNotAllowed,
    UnknownPartner,
    MethodNotAllowed,
    BodyTooLarge,
    /// The request head or body did not arrive within its deadline.
    RequestTimeout,
    /// The request head is larger than `limits.max_header_bytes`.
    HeaderTooLarge,
    UnsupportedMediaType,
    LegalBasisMissing,
    SubjectMissing,
    SubjectOptedOut,
    NotReady,
    UpstreamError,
    UpstreamTimeout,
    /// A broken invariant inside the gateway (never the caller's fault): 500.
    Internal,
}

impl RefusalKind {
    /// Every kind, in table order; metrics pre-register one series per code.
    pub const ALL: [RefusalKind; 17] = [
        RefusalKind::BadRequest,
        RefusalKind::Unauthenticated,
        RefusalKind::CallerNotAllowed,
        RefusalKind::RouteNotAllowed,
        RefusalKind::UnknownPartner,
        RefusalKind::MethodNotAllowed,
        RefusalKind::BodyTooLarge,
        RefusalKind::RequestTimeout,
        RefusalKind::HeaderTooLarge,
        RefusalKind::UnsupportedMediaType,
        RefusalKind::LegalBasisMissing,
        RefusalKind::SubjectMissing,
        RefusalKind::SubjectOptedOut,
        RefusalKind::NotReady,
        RefusalKind::UpstreamError,
        RefusalKind::UpstreamTimeout,
        RefusalKind::Internal,
    ];

    /// The table: HTTP status and code.
    const fn row(self) -> (u16, &'static str) {
        match self {
            RefusalKind::BadRequest => (400, "bad_request"),
            RefusalKind::Unauthenticated => (401, "unauthenticated"),
            RefusalKind::CallerNotAllowed => (403, "caller_not_allowed"),
            RefusalKind::RouteNotAllowed => (403, "route_not_allowed"),
            RefusalKind::UnknownPartner => (404, "unknown_partner"),
            RefusalKind::MethodNotAllowed => (405, "method_not_allowed"),
            RefusalKind::BodyTooLarge => (413, "body_too_large"),
            RefusalKind::RequestTimeout => (408, "request_timeout"),
            RefusalKind::HeaderTooLarge => (431, "header_too_large"),
            RefusalKind::UnsupportedMediaType => (415, "unsupported_media_type"),
            RefusalKind::LegalBasisMissing => (403, "legal_basis_missing"),
            RefusalKind::SubjectMissing => (422, "subject_missing"),
            RefusalKind::SubjectOptedOut => (451, "subject_opted_out"),
            RefusalKind::NotReady => (503, "not_ready"),
            RefusalKind::UpstreamError => (502, "upstream_error"),
            RefusalKind::UpstreamTimeout => (504, "upstream_timeout"),
            RefusalKind::Internal => (500, "internal_error"),
        }
    }

    pub const fn status(self) -> u16 {
        self.row().0
    }

    pub const fn code(self) -> &'static str {
        self.row().1
    }
}

/// A refused request: nothing reaches the partner when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    /// Human text for the JSON body; never a field value, a token or a customer id.
    pub message: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON error body: `{"error": "<code>", "message": "<human text>"}`.
    pub fn to_json(&self) -> Vec<u8> {
        error_body(self.code(), self.message())
    }
}

/// Every JSON error body the gateway sends, refusals and admin errors alike:
/// `{"error": "<code>", "message": "<human text>"}`.
pub fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"error": code, "message": message}))
        .unwrap_or_else(|_| br#"{"error":"internal_error","message":"refused"}"#.to_vec())
}

#[cfg(test)]
mod tests;
