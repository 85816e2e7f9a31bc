/*!
The body: none on a route that takes none; otherwise JSON of an allowed media type, run
through the route's filter program, with the opt-out set when the partner honours opt-outs
and the route names its records' subjects.
*/
use super::{Collect, Incoming, OptOuts, OPTOUTS_NOT_LOADED};
use crate::filter::{self, FilterOptions, FilterProgram, Filtered, Report};
use crate::policy::{Limits, Partner, Route};
use crate::{Refusal, RefusalKind};

/// What the body step needs besides the request.
pub(super) struct BodyStep<'a> {
    pub(super) partner: &'a Partner,
    pub(super) route: &'a Route,
    pub(super) limits: &'a Limits,
    pub(super) optouts: OptOuts<'a>,
    /// What the report notes (every forwarded value: [`filter::filter_forwarded`]).
    pub(super) collect: Collect,
}

impl BodyStep<'_> {
    /// The body to forward (empty when none arrived) and what the filter did. A request
    /// without body bytes has no body, whatever its `content-type` says (many clients send one
    /// on every GET and DELETE): the partner gets neither a body nor a `content-type`.
    pub(super) fn filter(&self, incoming: &Incoming<'_>) -> Result<(Vec<u8>, Report), Refusal> {
        if incoming.body.is_empty() {
            return Ok((Vec::new(), Report::default()));
        }
        let Some(program) = &self.route.filter else {
            return Err(Refusal::new(
                RefusalKind::BadRequest,
                format!(
                    "route {:?} of partner {:?} takes no body",
                    self.route.template, self.partner.id
                ),
            ));
        };
        let mut content_types = incoming
            .headers
            .iter()
            .filter(|(n, _)| *n == "content-type");
        check_json_content_type(
            content_types.next().map(|(_, v)| *v),
            &self.route.json_types,
        )?;
        if content_types.next().is_some() {
            return Err(Refusal::new(
                RefusalKind::UnsupportedMediaType,
                "more than one content-type header",
            ));
        }
        let filtered = self.run(program, incoming.body)?;
        Ok((filtered.body, filtered.report))
    }

    pub(super) fn run(&self, program: &FilterProgram, body: &[u8]) -> Result<Filtered, Refusal> {
        let options = FilterOptions {
            max_depth: self.limits.max_depth,
            pseudonymize_key: self.partner.pseudonymize_key.as_deref(),
            optouts: None,
            detail: self.collect.detail,
            // For the disclosure ledger: whose records went to the partner.
            subjects: self.collect.subjects && program.has_subjects(),
        };
        let run = if self.collect.forwarded {
            filter::filter_forwarded
        } else {
            filter::filter
        };
        if self.partner.honor_optouts.is_empty() || !program.has_subjects() {
            return run(program, body, &options);
        }
        let OptOuts::Loaded(source) = self.optouts else {
            return Err(Refusal::new(RefusalKind::NotReady, OPTOUTS_NOT_LOADED));
        };
        let mut outcome = None;
        source.with_lookup(&self.partner.honor_optouts, &mut |lookup| {
            let options = FilterOptions {
                optouts: Some(lookup),
                ..options
            };
            outcome = Some(run(program, body, &options));
        });
        outcome.unwrap_or_else(|| {
            Err(Refusal::new(
                RefusalKind::NotReady,
                "opt-out data could not be read",
            ))
        })
    }
}

/// Only `application/json` (or a `+json` type the route lists in `json_types`), optionally with
/// `charset=utf-8`, is filtered; anything else is 415.
pub(super) fn check_json_content_type(
    value: Option<&str>,
    json_types: &[String],
) -> Result<(), Refusal> {
    check_media_type(value, "application/json", &|media| {
        media == "application/json" || json_types.iter().any(|t| t == media)
    })
}

/// The content-type rule of every body the gateway reads: a media type `accepts` (compared
/// lowercase), with no parameter but `charset=utf-8`; anything else is 415 naming `expected`.
pub(super) fn check_media_type(
    value: Option<&str>,
    expected: &str,
    accepts: &dyn Fn(&str) -> bool,
) -> Result<(), Refusal> {
    let refuse = |what: &str| {
        Err(Refusal::new(
            RefusalKind::UnsupportedMediaType,
            format!("{what}: a body on this route must be {expected} (charset=utf-8 if given)"),
        ))
    };
    let Some(value) = value else {
        return refuse("no content-type");
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim();
    let media = if media.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(media.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(media)
    };
    if !accepts(&media) {
        return refuse(&format!("content-type {value:?}"));
    }
    for param in parts {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let (key, val) = param.split_once('=').unwrap_or((param, ""));
        let val = val.trim().trim_matches('"');
        if !(key.trim().eq_ignore_ascii_case("charset") && val.eq_ignore_ascii_case("utf-8")) {
            return refuse(&format!("content-type {value:?}"));
        }
    }
    Ok(())
}
