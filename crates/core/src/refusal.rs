/*!
The refusal table of DESIGN.md as one enum: each variant knows its HTTP status, its
machine-readable code (also the `reason` label of `partner_gateway_requests_refused_total`)
and carries the human message that goes into the JSON error body.
*/

/// Why a request was refused. Nothing reaches the partner when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    CallerNotAllowed(String),
    #[error("{0}")]
    RouteNotAllowed(String),
    #[error("{0}")]
    UnknownPartner(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    BodyTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    LegalBasisMissing(String),
    #[error("{0}")]
    SubjectMissing(String),
    #[error("{0}")]
    SubjectOptedOut(String),
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    UpstreamError(String),
    #[error("{0}")]
    UpstreamTimeout(String),
}

impl Refusal {
    /// Every code, in table order; metrics pre-register one series per code.
    pub const CODES: &'static [&'static str] = &[
        "bad_request",
        "unauthenticated",
        "caller_not_allowed",
        "route_not_allowed",
        "unknown_partner",
        "method_not_allowed",
        "body_too_large",
        "unsupported_media_type",
        "legal_basis_missing",
        "subject_missing",
        "subject_opted_out",
        "not_ready",
        "upstream_error",
        "upstream_timeout",
    ];

    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Unauthenticated(_) => 401,
            Refusal::CallerNotAllowed(_) => 403,
            Refusal::RouteNotAllowed(_) => 403,
            Refusal::UnknownPartner(_) => 404,
            Refusal::MethodNotAllowed(_) => 405,
            Refusal::BodyTooLarge(_) => 413,
            Refusal::UnsupportedMediaType(_) => 415,
            Refusal::LegalBasisMissing(_) => 403,
            Refusal::SubjectMissing(_) => 422,
            Refusal::SubjectOptedOut(_) => 451,
            Refusal::NotReady(_) => 503,
            Refusal::UpstreamError(_) => 502,
            Refusal::UpstreamTimeout(_) => 504,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadRequest(_) => "bad_request",
            Refusal::Unauthenticated(_) => "unauthenticated",
            Refusal::CallerNotAllowed(_) => "caller_not_allowed",
            Refusal::RouteNotAllowed(_) => "route_not_allowed",
            Refusal::UnknownPartner(_) => "unknown_partner",
            Refusal::MethodNotAllowed(_) => "method_not_allowed",
            Refusal::BodyTooLarge(_) => "body_too_large",
            Refusal::UnsupportedMediaType(_) => "unsupported_media_type",
            Refusal::LegalBasisMissing(_) => "legal_basis_missing",
            Refusal::SubjectMissing(_) => "subject_missing",
            Refusal::SubjectOptedOut(_) => "subject_opted_out",
            Refusal::NotReady(_) => "not_ready",
            Refusal::UpstreamError(_) => "upstream_error",
            Refusal::UpstreamTimeout(_) => "upstream_timeout",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Refusal::BadRequest(m)
            | Refusal::Unauthenticated(m)
            | Refusal::CallerNotAllowed(m)
            | Refusal::RouteNotAllowed(m)
            | Refusal::UnknownPartner(m)
            | Refusal::MethodNotAllowed(m)
            | Refusal::BodyTooLarge(m)
            | Refusal::UnsupportedMediaType(m)
            | Refusal::LegalBasisMissing(m)
            | Refusal::SubjectMissing(m)
            | Refusal::SubjectOptedOut(m)
            | Refusal::NotReady(m)
            | Refusal::UpstreamError(m)
            | Refusal::UpstreamTimeout(m) => m,
        }
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
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once() {
        let all = [
            Refusal::BadRequest(String::new()),
            Refusal::Unauthenticated(String::new()),
            Refusal::CallerNotAllowed(String::new()),
            Refusal::RouteNotAllowed(String::new()),
            Refusal::UnknownPartner(String::new()),
            Refusal::MethodNotAllowed(String::new()),
            Refusal::BodyTooLarge(String::new()),
            Refusal::UnsupportedMediaType(String::new()),
            Refusal::LegalBasisMissing(String::new()),
            Refusal::SubjectMissing(String::new()),
            Refusal::SubjectOptedOut(String::new()),
            Refusal::NotReady(String::new()),
            Refusal::UpstreamError(String::new()),
            Refusal::UpstreamTimeout(String::new()),
        ];
        let codes: Vec<_> = all.iter().map(Refusal::code).collect();
        assert_eq!(codes, Refusal::CODES);
    }

    #[test]
    fn json_body_has_code_and_message() {
        let body = Refusal::UnknownPartner("no partner \"x\"".into()).to_json();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "unknown_partner");
        assert_eq!(v["message"], "no partner \"x\"");
    }
}
