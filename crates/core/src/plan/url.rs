/*!
The URL opt-out check: a partner that honours opt-outs never gets an opted-out customer's id
in its URL either.
*/
use super::{OptOuts, Target, OPTOUTS_NOT_LOADED};
use crate::policy::RouteSegment;
use crate::{Refusal, RefusalKind};

/// A partner that honours opt-outs never gets an opted-out customer's id in its URL either:
/// every path parameter and every forwarded query value that is such an id refuses the request
/// (451), whatever the parameter is called — the gateway cannot know which ones hold customer
/// ids, so it treats them all as if they might.
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
    let decode = |raw: &str| {
        percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned()
    };
    let path_values = route
        .segments
        .iter()
        .zip(target.upstream_path.split('/').skip(1))
        .filter(|(segment, _)| matches!(segment, RouteSegment::Param(_)))
        .map(|(_, value)| decode(value));
    let query_values = forwarded_query
        .split('&')
        .filter_map(|pair| pair.split_once('=').map(|(_, v)| decode(v)));
    let values: Vec<String> = path_values
        .chain(query_values)
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    let OptOuts::Loaded(source) = optouts else {
        return Err(Refusal::new(RefusalKind::NotReady, OPTOUTS_NOT_LOADED));
    };
    let mut opted_out = false;
    source.with_lookup(&partner.honor_optouts, &mut |lookup| {
        opted_out = values.iter().any(|v| lookup.is_opted_out(v));
    });
    if opted_out {
        return Err(Refusal::new(
            RefusalKind::SubjectOptedOut,
            "the URL names a customer who opted out of sharing with this partner",
        ));
    }
    Ok(())
}
