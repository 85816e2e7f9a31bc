/*!
The URL opt-out check: a partner that honours opt-outs never gets an opted-out customer's id
in its URL either, in any spelling it might read as that id.
*/
use std::collections::HashSet;

use super::{OptOuts, Target, OPTOUTS_NOT_LOADED};
use crate::optout::id::{self, BadId};
use crate::policy::RouteSegment;
use crate::{Refusal, RefusalKind};

/// A partner that honours opt-outs never gets an opted-out customer's id in its URL either:
/// every path parameter and every forwarded query value that is such an id refuses the request
/// (451), whatever the parameter is called — the gateway cannot know which ones hold customer
/// ids, so it treats them all as if they might.
///
/// Values are judged after percent-decoding, both as written and with `+` read as a space (as
/// form decoders do), and so is each of its [`pieces`] (`q=c-1 c-200`, `c-1|c-200`,
/// `name:c-200`). A value a partner might read as another id than the text compared —
/// with `;`, `,`, `?`, `#`, `&` or a percent escape left after decoding, control characters, surrounding whitespace, a non-canonical integer
/// (`0300`, `+300`, `300.0`) or text NFKC changes — is refused: 400 `bad_request`, or 422
/// `subject_missing` for a parameter the route types as a customer id (`{cid:subject}` in the
/// path, `query: [ref:subject]`), which must also be non-empty.
pub(super) fn check_url_for_opted_out_ids(
    target: &Target,
    forwarded_query: &str,
    optouts: OptOuts<'_>,
) -> Result<(), Refusal> {
    let partner = &target.partner;
    if partner.honor_optouts.is_empty() {
        return Ok(());
    }
    let route = target.route();
    let mut values = HashSet::new();
    for (name, raw) in path_params(target) {
        let typed = route.subject_params.iter().any(|s| s == name);
        collect(Param::Path(name), raw, typed, &mut values)?;
    }
    for (raw_name, raw) in query_params(forwarded_query) {
        let name = decode(raw_name).unwrap_or_default();
        let typed = route.subject_query.contains(&name);
        collect(Param::Query(&name), raw, typed, &mut values)?;
    }
    if values.is_empty() {
        return Ok(());
    }
    let OptOuts::Loaded(source) = optouts else {
        return Err(Refusal::new(RefusalKind::NotReady, OPTOUTS_NOT_LOADED));
    };
    let mut opted_out = false;
    source.with_lookup(&partner.honor_optouts, &mut |lookup| {
        opted_out = values.iter().any(|v| id::is_opted_out(lookup, v));
    });
    if opted_out {
        return Err(Refusal::new(
            RefusalKind::SubjectOptedOut,
            "the URL names a customer who opted out of sharing with this partner",
        ));
    }
    Ok(())
}

/// The customer ids of [`typed_url_subjects`] for the disclosure ledger's `subjects`, when they
/// are all the customers the request names: the route names its records' `subject`, or nothing
/// but the URL is sent (`bodiless`). A body whose records name no one may carry anyone's data:
/// its record keeps empty `subjects`, so that `who-received` counts it among the disclosures
/// that may have carried any customer's, the URL's own included.
pub(super) fn ledger_url_subjects(
    target: &Target,
    forwarded_query: &str,
    bodiless: bool,
) -> Vec<String> {
    let named = target
        .route()
        .filter
        .as_ref()
        .is_some_and(|p| p.has_subjects());
    if named || bodiless {
        typed_url_subjects(target, forwarded_query)
    } else {
        Vec::new()
    }
}

/// The customer ids the route types in its URL (`{cid:subject}` path parameters and
/// `query: [ref:subject]` parameters of the forwarded query): they name a customer to the
/// partner as a record's subject does, so the disclosure ledger keys them among the request's
/// `subjects`. Each value in every form a partner may read it as, as the opt-out check judges
/// it ([`read_as`]), and also trimmed and cut into its [`pieces`] (a partner that honours no
/// opt-outs gets such values as sent): `who-received` finds `c-8` sent as `c-8.json`,
/// `c-8,c-9` or `c-8 c-9`.
/// A value that is empty or not UTF-8 once decoded names no one.
pub(super) fn typed_url_subjects(target: &Target, forwarded_query: &str) -> Vec<String> {
    let route = target.route();
    // Most routes type no URL value: no query name is decoded for them on every request.
    if route.subject_params.is_empty() && route.subject_query.is_empty() {
        return Vec::new();
    }
    let path = path_params(target)
        .filter(|(name, _)| route.subject_params.iter().any(|s| s == name))
        .map(|(name, raw)| (Param::Path(name), raw));
    let query = query_params(forwarded_query)
        .filter(|(name, _)| decode(name).is_some_and(|name| route.subject_query.contains(&name)))
        .map(|(name, raw)| (Param::Query(name), raw));
    let mut ids: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for form in path
        .chain(query)
        .filter_map(|(what, raw)| read_as(what, raw))
        .flatten()
    {
        let pieces = pieces(&form).flat_map(readings);
        let runs = id::number_runs(&form).flat_map(id::integer_readings);
        for id in readings(&form).chain(pieces).chain(runs) {
            if !id.is_empty() && seen.insert(id.clone()) {
                ids.push(id);
            }
        }
    }
    ids
}

/// The route's path parameters: each name with its raw (still percent-encoded) value.
fn path_params(target: &Target) -> impl Iterator<Item = (&str, &str)> {
    let segments = target.route().segments.iter();
    segments
        .zip(target.upstream_path.split('/').skip(1))
        .filter_map(|(segment, raw)| match segment {
            RouteSegment::Param(name) => Some((name.as_str(), raw)),
            RouteSegment::Literal(_) => None,
        })
}

/// The forwarded query's parameters as raw `(name, value)` pairs; a name without `=` is an
/// empty value (which a typed parameter may not be).
fn query_params(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

#[derive(Clone, Copy)]
enum Param<'a> {
    Path(&'a str),
    Query(&'a str),
}

impl std::fmt::Display for Param<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Param::Path(name) => write!(f, "path parameter `{name}`"),
            Param::Query(name) => write!(f, "query parameter `{name}`"),
        }
    }
}

/// Adds the decoded forms of one raw value to `values`, or refuses a form that cannot be
/// judged as an id.
fn collect(
    what: Param<'_>,
    raw: &str,
    typed: bool,
    values: &mut HashSet<String>,
) -> Result<(), Refusal> {
    let refuse = |problem: &str| {
        if typed {
            Refusal::new(
                RefusalKind::SubjectMissing,
                format!("{what} is not a valid customer id: it is {problem}"),
            )
        } else {
            Refusal::new(
                RefusalKind::BadRequest,
                format!("{what} is {problem}; a partner that honours opt-outs only gets URL values in one plain form"),
            )
        }
    };
    let forms = read_as(what, raw).ok_or_else(|| refuse("not UTF-8 once percent-decoded"))?;
    if forms[0].is_empty() {
        return if typed {
            Err(refuse(BadId::Empty.what()))
        } else {
            Ok(())
        };
    }
    for form in forms {
        match id::check_url_value(&form) {
            // An untyped value that long cannot be any recorded id: it is compared, not refused.
            // Unless it is a number, which a reader may take for a float near a recorded one.
            Err(BadId::TooLong) if !typed && !id::is_canonical_integer(&form) => {}
            result => result.map_err(|bad| refuse(bad.what()))?,
        }
        for piece in pieces(&form) {
            match id::check_url_value(piece) {
                Ok(()) | Err(BadId::TooLong) => {}
                // Compared as the integers it reads as, below; digits of other scripts have
                // no reading here, and are refused as in a whole value.
                Err(BadId::NonCanonicalNumber) if piece.is_ascii() => {}
                Err(bad) => return Err(refuse(bad.what())),
            }
            values.extend(readings(piece));
        }
        values.extend(id::number_runs(&form).flat_map(id::integer_readings));
        values.extend(readings(&form));
    }
    Ok(())
}

/// What one piece of a URL value is compared as: as spelled, without the punctuation at its
/// edges a partner may trim (`c-200.`, `_c-200`), and every integer it reads as (`0300` as
/// `300`, `0454` also as the octal `300`; the number-like runs of the whole value, `3e+2`
/// whose `+` splits it, are read too). A piece no reader takes for an integer of a safe size
/// (`52.5200081234`, `6.022e23`) is compared only as spelled: no opted-out id can be its
/// reading, so it is not refused.
fn readings(piece: &str) -> impl Iterator<Item = String> + '_ {
    let trimmed = piece.trim_matches(['.', '@', '_', '-']);
    let trimmed = (!trimmed.is_empty() && trimmed != piece).then(|| trimmed.to_string());
    std::iter::once(piece.to_string())
        .chain(trimmed)
        .chain(id::integer_readings(piece))
}

/// The ids a URL value may list: its pieces between the characters partners split lists and
/// queries on — anything but a letter, a digit, `-`, `_`, `.` and `@` (whitespace and the `+`
/// read as one, `|`, `/`, `:` of a search's `field:value`, brackets, quotes, other scripts'
/// punctuation) — without empty ones. Each is judged and compared as the whole value is
/// (`q=c-1 c-200`, `c-1|c-200` and `name:c-200` name `c-200`; `a 0300` names `300`), and
/// `who-received` finds each. (`.` and `@` join the parts of decimals and e-mail addresses,
/// which are compared whole.)
fn pieces(form: &str) -> impl Iterator<Item = &str> {
    let joins = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@');
    form.split(move |c: char| !joins(c))
        .filter(|piece| !piece.is_empty() && piece.len() < form.len())
}

/// The values a partner may read the raw URL value as: percent-decoded as written (first) and
/// with `+` read as a space, and for a path value also without a format suffix
/// ([`without_suffix`]). `None` when it is not UTF-8 once decoded.
fn read_as(what: Param<'_>, raw: &str) -> Option<Vec<String>> {
    let literal = decode(raw)?;
    let plus_as_space = decode(&raw.replace('+', " ")).unwrap_or_default();
    let mut forms = vec![literal, plus_as_space];
    if matches!(what, Param::Path(_)) {
        forms.extend(without_suffix(&forms));
    }
    Some(forms)
}

/// Web frameworks read a path segment's last `.ext` as a response format (Spring's suffix
/// patterns: `c-200.json` is customer `c-200`), or cut it at its first `.` (Rails' `:id` with
/// `(.:format)`). So a path value's forms are also judged without their suffix, as whole
/// values are: compared, and refused when a partner could read them as another id
/// (`0300.json`).
fn without_suffix(forms: &[String]) -> Vec<String> {
    forms
        .iter()
        .flat_map(|value| {
            let first = value.split_once('.').map(|(head, _)| head);
            let last = value.rsplit_once('.').map(|(head, _)| head);
            [first, last]
        })
        .flatten()
        .filter(|stem| !stem.is_empty())
        .map(str::to_string)
        .collect()
}

fn decode(raw: &str) -> Option<String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}
