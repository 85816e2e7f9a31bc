/*!
What a policy change starts or stops disclosing, computed from two validated policies (not
from their YAML text): per partner and route, the fields that start or stop being sent or
change transform, callers added or removed, opt-out scopes honoured or dropped, legal-basis
rules, routes, methods, query parameters and headers added or removed. Each [`Change`] says
in a privacy officer's words what happens ("acme-ship will START receiving
shipments[*].email (user.contact.email) in clear on POST /v1/shipments") and whether it
discloses more: anything that lets a partner learn something it could not before does.

- `fields`: what a route discloses of one field path, read semantically.
*/
mod fields;
mod routes;

use std::collections::BTreeSet;

use serde::Serialize;

pub use fields::{disclosure, Disclosure, FieldChange};

use crate::filter::FieldPath;
use crate::filter::FilterSpec;
use crate::policy::{
    env_name_shown, OptOutStoreConfig, Partner, Policy, Route, SecretVariable, API_CREDENTIAL,
    PSEUDONYMISATION_KEY,
};

/// One effect of a policy change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub partner: String,
    /// `METHODS /template` of the route concerned, if the change is about one route.
    pub route: Option<String>,
    /// What changed: `field_started`, `field_stopped`, `transform_changed`, `caller_added`, …
    pub change: &'static str,
    /// The field path (policy syntax), or the caller, scope, method, parameter or header name.
    pub subject: Option<String>,
    pub category: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    /// The partner can learn something it could not before.
    pub discloses_more: bool,
    /// The effect in plain words.
    pub text: String,
}

/// Every effect of going from one policy to another.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyDiff {
    pub discloses_more: bool,
    pub changes: Vec<Change>,
}

struct Builder<'a> {
    changes: Vec<Change>,
    files: &'a FileId<'a>,
}

/// What a file named by a policy holds, for comparing it with the other policy's: a digest of
/// its contents (the shell reads the files), or `None` when that is not known (then the paths
/// are compared).
pub type FileId<'a> = dyn Fn(&std::path::Path) -> Option<String> + 'a;

impl Builder<'_> {
    /// What the file at `path` holds, as far as [`FileId`] knows, else its path.
    fn file_id(&self, path: &std::path::Path) -> String {
        (self.files)(path).unwrap_or_else(|| path.display().to_string())
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        partner: &str,
        route: Option<&str>,
        change: &'static str,
        subject: Option<String>,
        before_after: (Option<String>, Option<String>),
        discloses_more: bool,
        text: String,
    ) {
        self.changes.push(Change {
            partner: partner.to_string(),
            route: route.map(str::to_string),
            change,
            subject,
            category: None,
            before: before_after.0,
            after: before_after.1,
            discloses_more,
            text,
        });
    }
}

/// Compares `old` with `new`: [`diff_with`], comparing the files policies name by their paths
/// only.
pub fn diff(old: &Policy, new: &Policy) -> PolicyDiff {
    diff_with(old, new, &|_| None)
}

/// What going from `old` to `new` changes; `files` tells what a file either names holds (a
/// partner's CA bundle: see [`FileId`]).
pub fn diff_with(old: &Policy, new: &Policy, files: &FileId<'_>) -> PolicyDiff {
    let mut b = Builder {
        changes: Vec::new(),
        files,
    };
    let unauth = |p: &Policy| {
        p.gateway
            .callers
            .as_ref()
            .is_some_and(|c| c.allow_unauthenticated)
    };
    if unauth(old) != unauth(new) {
        let on = unauth(new);
        b.push(
            "*",
            None,
            if on { "unauthenticated_allowed" } else { "unauthenticated_refused" },
            None,
            (None, None),
            on,
            if on {
                "ANY local process will be able to send through the gateway (callers.allow_unauthenticated)".into()
            } else {
                "callers must authenticate again (allow_unauthenticated removed)".into()
            },
        );
    }
    safeguards_switched(&mut b, old, new);
    body_limits_changed(&mut b, old, new);
    optout_store_changed(&mut b, old, new);
    caller_trust(&mut b, old, new);
    gateway_secrets_shared(&mut b, old, new);
    let ids: BTreeSet<&String> = old.partners.keys().chain(new.partners.keys()).collect();
    for id in ids {
        match (old.partners.get(id), new.partners.get(id)) {
            (Some(o), Some(n)) => {
                partner(&mut b, o, n);
                own_secrets(&mut b, (old, new), o, n);
            }
            (None, Some(n)) => {
                b.push(
                    id,
                    None,
                    "partner_added",
                    None,
                    (None, Some(n.kind.as_str().into())),
                    true,
                    format!(
                        "{id} is a NEW recipient ({}, purpose {})",
                        n.kind.as_str(),
                        n.purpose
                    ),
                );
                for r in &n.routes {
                    route_added(&mut b, n, r);
                }
            }
            (Some(_), None) => b.push(
                id,
                None,
                "partner_removed",
                None,
                (None, None),
                false,
                format!("{id} will STOP receiving anything (partner removed)"),
            ),
            (None, None) => {}
        }
    }
    PolicyDiff {
        discloses_more: b.changes.iter().any(|c| c.discloses_more),
        changes: b.changes,
    }
}

/// `POST /v1/shipments`.
fn route_label(r: &Route) -> String {
    format!("{} {}", r.methods.join(", "), r.template)
}

fn spec(r: &Route) -> Option<&FilterSpec> {
    r.filter.as_deref().map(|f| f.spec())
}

/// Whom the gateway takes for a caller: the token issuer, audience and keys (the keys file
/// compared by what it holds when `b.files` knows), the HS256 secret's variable, the claim whose
/// groups may stand for a caller, the client CA and how a certificate names its caller. A new
/// key or CA can speak for any caller, so a change here needs sign-off, as a new caller does.
fn caller_trust(b: &mut Builder<'_>, old: &Policy, new: &Policy) {
    let trust = |p: &Policy| {
        let callers = p.gateway.callers.as_ref().map(|c| {
            let keys = c.keys.as_ref().map(|k| b.file_id(&k.path));
            (
                c.issuer.clone(),
                c.audience.clone(),
                keys,
                c.hs256_secret_env.clone(),
                c.groups_claim.clone(),
            )
        });
        let tls = p.gateway.tls.as_ref();
        let client_ca = tls
            .and_then(|t| t.client_ca.as_ref())
            .map(|ca| b.file_id(&ca.path));
        let identity = tls
            .and_then(|t| t.client_identity)
            .map(|i| format!("{i:?}"));
        (callers, client_ca, identity)
    };
    let (was, is) = (trust(old), trust(new));
    if was == is {
        return;
    }
    let mut what = Vec::new();
    if was.0 != is.0 {
        what.push("caller tokens (issuer, audience, keys, HS256 secret or groups claim)");
    }
    if was.1 != is.1 {
        what.push("the client CA");
    }
    if was.2 != is.2 {
        what.push("how a client certificate names its caller");
    }
    let text = format!(
        "the gateway will take callers on other evidence: {} changed (any caller may be spoken for)",
        what.join(", ")
    );
    b.push(
        "*",
        None,
        "caller_trust_changed",
        None,
        (None, None),
        true,
        text,
    );
}

/// A safeguard switched on or off: the disclosure ledger (disclosures stop or start being
/// recorded) or data-use tokens (`signing: { disabled: true }`: partners stop or start getting
/// the signed statement of what they may do with the data). Nothing more reaches a partner
/// either way, so neither needs sign-off as a disclosure, but a reviewer should see it.
fn safeguards_switched(b: &mut Builder<'_>, old: &Policy, new: &Policy) {
    let ledger = |p: &Policy| p.gateway.ledger.is_some();
    let signing = |p: &Policy| p.gateway.signing.is_some();
    let switches = [
        (ledger(old), ledger(new), [
            ("ledger_on", "the disclosure ledger will record every disclosure"),
            ("ledger_off", "the disclosure ledger will be switched off: disclosures from then on are not recorded"),
        ]),
        (signing(old), signing(new), [
            ("signing_on", "partners will receive a signed data-use token with every request"),
            ("signing_off", "partners will no longer receive a signed data-use token (signing disabled)"),
        ]),
    ];
    for (was, is, [on, off]) in switches {
        if was != is {
            let (change, text) = if is { on } else { off };
            b.push("*", None, change, None, (None, None), false, text.into());
        }
    }
}

/// The limits that decide which bodies are forwarded at all: raised, requests refused before
/// (413 `body_too_large`, 400 for nesting, 431 for a large head) start reaching partners, with
/// whatever records, fields, query parameters and headers they hold; lowered, some stop.
fn body_limits_changed(b: &mut Builder<'_>, old: &Policy, new: &Policy) {
    let (o, n) = (&old.gateway.limits, &new.gateway.limits);
    let limits = [
        (
            "max_body_bytes",
            o.max_body_bytes,
            n.max_body_bytes,
            "larger bodies",
        ),
        (
            "max_decoded_bytes",
            o.max_decoded_bytes,
            n.max_decoded_bytes,
            "larger decompressed bodies",
        ),
        (
            "max_depth",
            o.max_depth,
            n.max_depth,
            "more deeply nested bodies",
        ),
        (
            "max_header_bytes",
            o.max_header_bytes,
            n.max_header_bytes,
            "requests with larger heads",
        ),
    ];
    // Unless set, the decoded limit is the body limit: it moves with it, said once.
    let follows = |l: &crate::policy::Limits| l.max_decoded_bytes == l.max_body_bytes;
    let decoded_follows = follows(o) && follows(n);
    for (name, was, is, what) in limits {
        if was == is || (name == "max_decoded_bytes" && decoded_follows) {
            continue;
        }
        let raised = is > was;
        let text = if raised {
            format!("limits.{name} goes from {was} to {is}: {what}, refused before, will be forwarded to partners")
        } else {
            format!("limits.{name} goes from {was} to {is}: some {what} forwarded before will be refused")
        };
        b.push(
            "*",
            None,
            if raised {
                "limit_raised"
            } else {
                "limit_lowered"
            },
            Some(format!("limits.{name}")),
            (Some(was.to_string()), Some(is.to_string())),
            raised,
            text,
        );
    }
}

/// The PostgreSQL table (or its URL's variable) the opt-outs are read from, or a switch between
/// the embedded store and PostgreSQL. Another store holds other opt-outs (a new one none), so
/// records of customers who opted out may start being sent. An embedded store's directory is
/// not compared: each policy resolves it against its own location, so two copies of one
/// policy in different places would always differ.
fn optout_store_changed(b: &mut Builder<'_>, old: &Policy, new: &Policy) {
    let store = |p: &Policy| match &p.gateway.optouts {
        None => "no opt-out store".to_string(),
        Some(OptOutStoreConfig::Embedded { .. }) => "the embedded store".to_string(),
        Some(OptOutStoreConfig::Postgres(pg)) => {
            format!(
                "PostgreSQL table {} (URL in {})",
                pg.table,
                env_name_shown(&pg.url_env)
            )
        }
    };
    let (before, after) = (store(old), store(new));
    if before == after {
        embedded_store_moved(b, old, new);
        optout_staleness_changed(b, old, new);
        return;
    }
    store_changed(b, before, after);
}

/// Opt-outs read from another store (`before` and `after` in words).
fn store_changed(b: &mut Builder<'_>, before: String, after: String) {
    b.push(
        "*",
        None,
        "optout_store_changed",
        None,
        (Some(before.clone()), Some(after.clone())),
        true,
        format!("opt-outs will be read from {after} instead of {before}: a store without the same opt-outs sends the records of customers who opted out"),
    );
}

/// Another directory for the embedded store: customers opted out in the old one are not in
/// the new one unless it was copied. Two copies of one policy in different places resolve the
/// same `path` to different directories, so a directory counts as another only when it differs
/// both as resolved and as [`Builder::file_id`] knows it (its path below its policy's base).
fn embedded_store_moved(b: &mut Builder<'_>, old: &Policy, new: &Policy) {
    let dir = |p: &Policy| {
        p.gateway
            .optouts
            .as_ref()
            .and_then(OptOutStoreConfig::embedded_path)
            .map(std::path::Path::to_path_buf)
    };
    let (Some(before), Some(after)) = (dir(old), dir(new)) else {
        return;
    };
    if before == after || b.file_id(&before) == b.file_id(&after) {
        return;
    }
    let in_dir = |dir: std::path::PathBuf| format!("the embedded store in {}", dir.display());
    store_changed(b, in_dir(before), in_dir(after));
}

/// How stale the replicas' copy of the PostgreSQL opt-outs may get before opt-out routes are
/// refused: a longer bound lets opt-outs recorded meanwhile go unseen for longer, which
/// discloses more.
fn optout_staleness_changed(b: &mut Builder<'_>, old: &Policy, new: &Policy) {
    let bound = |p: &Policy| match &p.gateway.optouts {
        Some(OptOutStoreConfig::Postgres(pg)) => Some(pg.max_staleness),
        _ => None,
    };
    let (Some(before), Some(after)) = (bound(old), bound(new)) else {
        return;
    };
    if before == after {
        return;
    }
    b.push(
        "*",
        None,
        "optout_staleness_changed",
        None,
        (
            Some(format!("{}s", before.as_secs())),
            Some(format!("{}s", after.as_secs())),
        ),
        after > before,
        format!(
            "replicas may apply opt-outs up to {}s old instead of {}s before refusing opt-out routes",
            after.as_secs(),
            before.as_secs()
        ),
    );
}

/// A secret that must be each partner's own, in the variable it comes from.
struct OwnSecret {
    change: &'static str,
    /// As in [`SecretVariable::what`].
    what: &'static str,
    env: fn(&Partner) -> Option<&String>,
    /// What the partner gets with another secret (`partner`, the other's description).
    shared: fn(&str, &str) -> String,
    /// What it gets with a new secret of its own.
    own: &'static str,
}

const OWN_SECRETS: [OwnSecret; 2] = [
    OwnSecret {
        change: "pseudonym_key_changed",
        what: PSEUDONYMISATION_KEY,
        env: |p| p.pseudonymize_key_env.as_ref(),
        shared: |partner, other| {
            format!("{partner} will receive pseudonyms made with {other}: whoever holds it can make and link them")
        },
        own: "will receive pseudonyms made with another key",
    },
    OwnSecret {
        change: "credential_changed",
        what: API_CREDENTIAL,
        env: |p| p.upstream_auth_source.as_ref().map(|c| &c.env),
        shared: |partner, other| format!("{partner} will be sent {other} as its API credential"),
        own: "will be sent another API credential",
    },
];

/// The variables a partner's own secrets come from (pseudonymisation key, API credential).
/// Another variable of its own gives another secret; a variable that holds another secret, in
/// the new policy or in the old one (another partner's key or credential, whose pseudonyms or
/// access that partner already has; the gateway's admin token or ledger key; the partner's
/// other secret), discloses more.
fn own_secrets(b: &mut Builder<'_>, policies: (&Policy, &Policy), o: &Partner, n: &Partner) {
    let (old_vars, new_vars) = (policies.0.secret_variables(), policies.1.secret_variables());
    for secret in &OWN_SECRETS {
        let (before, after) = ((secret.env)(o), (secret.env)(n));
        let Some(name) = after.filter(|_| before != after) else {
            continue;
        };
        let itself =
            |v: &&SecretVariable<'_>| v.owner == Some(n.id.as_str()) && v.what == secret.what;
        let shared = new_vars
            .iter()
            .chain(&old_vars)
            .find(|v| v.env == name.as_str() && !itself(v));
        let was = before.map_or("none", |b| env_name_shown(b));
        let name = env_name_shown(name);
        let text = match shared {
            Some(other) => format!(
                "{} ({name}, was {was})",
                (secret.shared)(&n.id, &other.describe())
            ),
            None => format!("{} {} (in {name} instead of {was})", n.id, secret.own),
        };
        b.push(
            &n.id,
            None,
            secret.change,
            None,
            (Some(was.to_string()), Some(name.to_string())),
            shared.is_some(),
            text,
        );
    }
}

/// A gateway secret (admin token, ledger key, caller HS256 secret, opt-out database URL) whose
/// variable a partner's key or credential now also reads, where it did not before, because the
/// gateway's variable changed (a partner's own change is [`own_secrets`]): the partner is sent,
/// or pseudonymises with, that secret.
fn gateway_secrets_shared(b: &mut Builder<'_>, old: &Policy, new: &Policy) {
    let (old_vars, new_vars) = (old.secret_variables(), new.secret_variables());
    let same_place = |v: &SecretVariable<'_>, vars: &[SecretVariable<'_>]| {
        vars.iter()
            .any(|o| o.owner == v.owner && o.what == v.what && o.env == v.env)
    };
    for gateway in new_vars.iter().filter(|v| v.owner.is_none()) {
        let partners = new_vars
            .iter()
            .filter(|v| v.owner.is_some() && v.env == gateway.env);
        for partner in partners {
            // Shared before already, or the partner's own variable changed (reported there).
            let before = same_place(gateway, &old_vars) || !same_place(partner, &old_vars);
            if before {
                continue;
            }
            let id = partner.owner.unwrap_or_default();
            b.push(
                id,
                None,
                "secret_shared",
                None,
                (None, Some(env_name_shown(gateway.env).to_string())),
                true,
                format!(
                    "{} now reads {}'s variable ({}): {id} is sent or pseudonymises with it",
                    gateway.describe(),
                    partner.describe(),
                    env_name_shown(gateway.env)
                ),
            );
        }
    }
}

fn partner(b: &mut Builder<'_>, o: &Partner, n: &Partner) {
    attributes(b, o, n);
    trust(b, o, n);
    access(b, o, n);
    legal_basis(b, o, n);
    routes::routes(b, o, n);
}

/// Kind, purpose and upstream: each change discloses more (to someone else, or for another use).
fn attributes(b: &mut Builder<'_>, o: &Partner, n: &Partner) {
    let id = &n.id;
    let mut attr =
        |change: &'static str, before: String, after: String, more: bool, text: String| {
            b.push(
                id,
                None,
                change,
                None,
                (Some(before), Some(after)),
                more,
                text,
            )
        };
    if o.kind != n.kind {
        attr(
            "kind_changed",
            o.kind.as_str().into(),
            n.kind.as_str().into(),
            true,
            format!(
                "{id} will be a {} instead of a {} (use {} instead of {})",
                n.kind.as_str(),
                o.kind.as_str(),
                n.kind.data_use(),
                o.kind.data_use()
            ),
        );
    }
    if o.purpose != n.purpose {
        attr(
            "purpose_changed",
            o.purpose.clone(),
            n.purpose.clone(),
            true,
            format!(
                "{id} will receive data for the purpose {:?} instead of {:?}",
                n.purpose, o.purpose
            ),
        );
    }
    if o.upstream != n.upstream {
        let show = |u: &crate::policy::Upstream| {
            format!(
                "{}://{}",
                if u.tls { "https" } else { "http" },
                u.authority()
            )
        };
        attr(
            "upstream_changed",
            show(&o.upstream),
            show(&n.upstream),
            true,
            format!(
                "{id}'s data will go to {} instead of {}",
                show(&n.upstream),
                show(&o.upstream)
            ),
        );
    }
}

/// Whom the gateway takes for the partner on an `https` upstream: the roots it trusts (a pinned
/// CA file, or the system's) and the name it verifies. A change there can hand the partner's
/// data to another endpoint, as an upstream change can, so it needs the same sign-off. A CA
/// file is compared by what it holds when `b.files` knows (else by path).
fn trust(b: &mut Builder<'_>, o: &Partner, n: &Partner) {
    // What the trust is (for comparing), and how to show it.
    let trust = |p: &Partner| {
        let tls = p.tls.as_ref();
        let ca = tls.and_then(|t| t.ca.as_ref()).map(|ca| {
            let (id, path) = (b.file_id(&ca.path), ca.path.display().to_string());
            let shown = match id == path {
                true => format!("CA {path}"),
                false => format!("CA {path} ({id})"),
            };
            (id, shown)
        });
        let name = tls.and_then(|t| t.server_name.clone());
        // The host itself is the upstream's (its change is an upstream change).
        let name = name.unwrap_or_else(|| "the upstream's host".to_string());
        let (ca_id, shown) = ca.unwrap_or_else(|| (String::new(), "the system's roots".into()));
        ((ca_id, name.clone()), format!("{shown}, name {name}"))
    };
    if !n.upstream.tls || !o.upstream.tls {
        return; // a scheme change is an upstream change already
    }
    let ((was, before), (is, after)) = (trust(o), trust(n));
    if was == is {
        return;
    }
    let id = &n.id;
    b.push(
        id,
        None,
        "trust_changed",
        None,
        (Some(before.clone()), Some(after.clone())),
        true,
        format!("{id}'s endpoint will be verified with {after} instead of {before}"),
    );
}

/// Who may send to the partner, and which opt-out scopes it honours.
fn access(b: &mut Builder<'_>, o: &Partner, n: &Partner) {
    let id = &n.id;
    names(
        b,
        id,
        None,
        "caller",
        &o.allowed_callers,
        &n.allowed_callers,
        true,
        |name, added| {
            if added {
                format!("caller {name} will be able to send to {id}")
            } else {
                format!("caller {name} will no longer be able to send to {id}")
            }
        },
    );
    let scopes = |p: &Partner| {
        p.honor_optouts
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    names(
        b,
        id,
        None,
        "optout_scope",
        &scopes(o),
        &scopes(n),
        false,
        |scope, added| {
            if added {
                format!("{id} will honour the opt-out scope {scope}: records of customers who opted out of it STOP being sent")
            } else {
                format!("{id} will NO LONGER honour the opt-out scope {scope}: records of customers who opted out of it START being sent")
            }
        },
    );
}

/// Names added or removed (callers, scopes, methods, parameters, headers). `added_is_more`:
/// whether an added name discloses more (a dropped opt-out scope does, an added one does not).
#[allow(clippy::too_many_arguments)]
fn names(
    b: &mut Builder<'_>,
    partner: &str,
    route: Option<&str>,
    what: &'static str,
    old: &[String],
    new: &[String],
    added_is_more: bool,
    text: impl Fn(&str, bool) -> String,
) {
    let (added, removed): (&'static str, &'static str) = match what {
        "caller" => ("caller_added", "caller_removed"),
        "optout_scope" => ("optout_scope_added", "optout_scope_dropped"),
        "method" => ("method_added", "method_removed"),
        "query" => ("query_added", "query_removed"),
        "json_type" => ("json_type_added", "json_type_removed"),
        "decode" => ("decode_added", "decode_removed"),
        "typed_id" => ("typed_id_added", "typed_id_removed"),
        _ => ("header_added", "header_removed"),
    };
    for name in new.iter().filter(|x| !old.contains(x)) {
        b.push(
            partner,
            route,
            added,
            Some(name.clone()),
            (None, None),
            added_is_more,
            text(name, true),
        );
    }
    for name in old.iter().filter(|x| !new.contains(x)) {
        b.push(
            partner,
            route,
            removed,
            Some(name.clone()),
            (None, None),
            !added_is_more,
            text(name, false),
        );
    }
}

fn legal_basis(b: &mut Builder<'_>, o: &Partner, n: &Partner) {
    let id = &n.id;
    if o.legal_basis_header != n.legal_basis_header {
        // A header of another name is one the old policy did not send: sign-off, like a
        // header added.
        let more = n.legal_basis_header.is_none() || o.legal_basis_header.is_some();
        let text = match (&o.legal_basis_header, &n.legal_basis_header) {
            (_, None) => format!("{id} will receive requests WITHOUT a legal-basis reference"),
            (None, Some(h)) => {
                format!("every request to {id} will need a legal-basis reference in {h:?}")
            }
            (Some(a), Some(h)) => {
                format!("{id}'s legal-basis reference will be read from {h:?} instead of {a:?}")
            }
        };
        b.push(
            id,
            None,
            "legal_basis_changed",
            None,
            (o.legal_basis_header.clone(), n.legal_basis_header.clone()),
            more,
            text,
        );
    }
    let format = |p: &Partner| {
        p.legal_basis_format
            .as_ref()
            .map(|r| r.as_str().to_string())
    };
    let (of, nf) = (format(o), format(n));
    if of != nf {
        let text = match (&of, &nf) {
            (_, None) => format!(
                "{id} will accept any legal-basis reference (format {} removed)",
                of.clone().unwrap_or_default()
            ),
            (None, Some(f)) => {
                format!("{id} will accept only legal-basis references of the form {f}")
            }
            (Some(a), Some(f)) => {
                format!("{id} will accept legal-basis references of the form {f} instead of {a}")
            }
        };
        // A different regular expression may accept references the old one refused.
        let more = nf.is_none() || of.is_some();
        b.push(
            id,
            None,
            "legal_basis_format_changed",
            None,
            (of, nf),
            more,
            text,
        );
    }
}

fn route_added(b: &mut Builder<'_>, p: &Partner, r: &Route) {
    let label = route_label(r);
    b.push(
        &p.id,
        Some(&label),
        "route_added",
        Some(r.template.clone()),
        (None, None),
        true,
        format!("{} will be reachable on the NEW route {label}", p.id),
    );
    for change in fields::compare(None, spec(r)) {
        field(b, p, (r, r), change);
    }
}

/// What changes for the requests `o` took and `n` takes: parameters, headers, bodies taken,
/// records, streaming, fields and their categories (methods are compared per shape, see
/// `routes`).
fn route(b: &mut Builder<'_>, p: &Partner, o: &Route, n: &Route) {
    let id = &p.id;
    let label = route_label(n);
    let on = |what: String| format!("{what} on {label}");
    let forwarded = [
        ("query", "query parameter", &o.query, &n.query),
        ("header", "header", &o.headers, &n.headers),
    ];
    for (what, noun, old, new) in forwarded {
        names(b, id, Some(&label), what, old, new, true, |name, added| {
            let starts = if added {
                "START receiving"
            } else {
                "STOP receiving"
            };
            on(format!("{id} will {starts} the {noun} {name}"))
        });
    }
    // Bodies the route starts to take: requests refused before (415) now reach the partner.
    let codings =
        |r: &Route| -> Vec<String> { r.decode.iter().map(|c| c.as_str().to_string()).collect() };
    let admitted = [
        (
            "json_type",
            "bodies of type",
            o.json_types.clone(),
            n.json_types.clone(),
        ),
        ("decode", "bodies encoded with", codings(o), codings(n)),
    ];
    for (what, noun, old, new) in admitted {
        names(
            b,
            id,
            Some(&label),
            what,
            &old,
            &new,
            true,
            |name, added| {
                let will = if added { "also take" } else { "no longer take" };
                on(format!("{id} will {will} {noun} {name}"))
            },
        );
    }
    typed_ids(b, p, o, n);
    records_changed(b, p, o, n);
    stream_changed(b, p, o, n);
    for change in fields::compare(spec(o), spec(n)) {
        field(b, p, (o, n), change);
    }
    categories_changed(b, p, o, n);
}

/// A route that starts or stops streaming (`stream: ndjson`). Streamed, a request carries any
/// number of records, its data-use token binds no body (it is signed before the body exists)
/// and its ledger record is completed only by its outcome line: less that the partner and the
/// ledger can prove per request, so starting to stream needs sign-off.
fn stream_changed(b: &mut Builder<'_>, p: &Partner, o: &Route, n: &Route) {
    if o.stream == n.stream {
        return;
    }
    let show = |r: &Route| match r.stream {
        Some(format) => format!("streamed ({})", format.media_type()),
        None => "one JSON body per request".to_string(),
    };
    let label = route_label(n);
    let (before, after) = (show(o), show(n));
    b.push(
        &p.id,
        Some(&label),
        "stream_changed",
        None,
        (Some(before.clone()), Some(after.clone())),
        n.stream.is_some(),
        format!(
            "{} will receive {after} instead of {before} on {label} (a streamed request's token binds no body digest)",
            p.id
        ),
    );
}

/// Fields sent under both policies whose data category changes: the records of processing,
/// the ledger and the metrics then say the partner receives another category, which needs the
/// same sign-off as a new field. Each route field path of either policy is compared by the
/// category it resolves to in each (its own entry, else the `.**` path above it), so a path
/// rewritten from `a.**` to `a.b` with another category is found too.
fn categories_changed(b: &mut Builder<'_>, p: &Partner, o: &Route, n: &Route) {
    let label = route_label(n);
    let mut paths: Vec<FieldPath> = Vec::new();
    for f in o.fields.iter().chain(&n.fields) {
        match FieldPath::parse(&f.path) {
            Ok(path) if !paths.contains(&path) => paths.push(path),
            _ => {}
        }
    }
    for path in paths {
        // Whole: a `.**` path sent only in part is compared member by member instead.
        let sent = |r: &Route| {
            !matches!(
                disclosure(spec(r), &path),
                Disclosure::None | Disclosure::Partial(_)
            )
        };
        let (before, after) = (category(o, &path), category(n, &path));
        if before == after || !sent(o) || !sent(n) {
            continue;
        }
        let word = |c: &Option<String>| c.clone().unwrap_or_else(|| "no category".into());
        b.changes.push(Change {
            partner: p.id.clone(),
            route: Some(label.clone()),
            change: "category_changed",
            subject: Some(path.to_string()),
            category: after.clone(),
            before: Some(word(&before)),
            after: Some(word(&after)),
            discloses_more: true,
            text: format!(
                "{} will receive {path} as {} instead of {} on {label}",
                p.id,
                word(&after),
                word(&before)
            ),
        });
    }
}

/// Path segments and query parameters typed as customer ids (`{cid:subject}`,
/// `query: [ref:subject]`): on a partner that honours opt-outs a value that is no id is refused
/// (422). One no longer typed lets such values through.
fn typed_ids(b: &mut Builder<'_>, p: &Partner, o: &Route, n: &Route) {
    if p.honor_optouts.is_empty() {
        return; // only checked where opt-outs are honoured (a lost scope is reported itself)
    }
    let typed = |r: &Route| -> Vec<String> {
        let segments = r.segments.iter().enumerate().filter_map(|(i, s)| match s {
            crate::policy::RouteSegment::Param(name) if r.subject_params.contains(name) => {
                Some(format!("path segment {}", i + 1))
            }
            _ => None,
        });
        let query = r
            .subject_query
            .iter()
            .map(|q| format!("query parameter {q}"));
        segments.chain(query).collect()
    };
    let (id, label) = (&p.id, route_label(n));
    names(
        b,
        id,
        Some(&label),
        "typed_id",
        &typed(o),
        &typed(n),
        false,
        |what, added| {
            if added {
                format!("{id} will get the {what} on {label} only when it is a customer id (no opt-out)")
            } else {
                format!("{id} will get the {what} on {label} without checking it is a customer id (or its opt-outs)")
            }
        },
    );
}

/// Where a route's records and their subject are: opt-outs apply there when the partner
/// honours them (a change may then let an opted-out customer's record through); elsewhere they
/// only decide what is counted and whom the ledger names (`who-received`), which discloses
/// nothing more but is a change all the same.
fn records_changed(b: &mut Builder<'_>, p: &Partner, o: &Route, n: &Route) {
    let records = |r: &Route| {
        spec(r).map(|s| {
            (
                s.records.as_ref().map(ToString::to_string),
                s.subject.clone(),
            )
        })
    };
    let (or, nr) = (records(o), records(n));
    if or == nr {
        return;
    }
    let show = |r: &Option<(Option<String>, Option<String>)>| match r {
        Some((Some(rec), Some(sub))) => format!("records {rec}, subject {sub}"),
        _ => "no records".to_string(),
    };
    let id = &p.id;
    let label = route_label(n);
    let honours = !p.honor_optouts.is_empty();
    let text = if honours {
        format!(
            "{id} will have opt-outs applied to {} instead of {} on {label}",
            show(&nr),
            show(&or)
        )
    } else {
        format!(
            "{id} will have records counted and customers named in the ledger by {} instead of {} on {label} (it honours no opt-outs)",
            show(&nr),
            show(&or)
        )
    };
    b.push(
        id,
        Some(&label),
        "records_changed",
        None,
        (Some(show(&or)), Some(show(&nr))),
        honours,
        text,
    );
}

fn field(b: &mut Builder<'_>, p: &Partner, (o, r): (&Route, &Route), c: FieldChange) {
    let id = &p.id;
    let label = route_label(r);
    // The candidate's word for the field, else the one in force (a field that stops).
    let category = category(r, &c.path).or_else(|| category(o, &c.path));
    let named = match &category {
        Some(cat) => format!("{} ({cat})", c.path),
        None => c.path.to_string(),
    };
    let (change, text) = match (&c.old, &c.new) {
        (Disclosure::None, new) => (
            "field_started",
            format!(
                "{id} will START receiving {named} {} on {label}",
                new.words()
            ),
        ),
        (old, Disclosure::None) => (
            "field_stopped",
            format!(
                "{id} will STOP receiving {named} (was {}) on {label}",
                old.words()
            ),
        ),
        (old, new) => (
            "transform_changed",
            format!(
                "{id} will receive {named} {} instead of {} on {label}",
                new.words(),
                old.words()
            ),
        ),
    };
    b.changes.push(Change {
        partner: id.clone(),
        route: Some(label),
        change,
        subject: Some(c.path.to_string()),
        category,
        before: Some(c.old.name().to_string()),
        after: Some(c.new.name().to_string()),
        discloses_more: c.old.more(&c.new),
        text,
    });
}

/// The category `route` gives `path`: its own entry, else a path of the same length covering it
/// (`*` covers named members), else the nearest `.**` path above it.
fn category(route: &Route, path: &FieldPath) -> Option<String> {
    let parsed = || {
        route
            .fields
            .iter()
            .filter_map(|f| Some((FieldPath::parse(&f.path).ok()?, f.category.as_ref()?)))
    };
    if let Some((_, cat)) = parsed().find(|(p, _)| p == path) {
        return Some(cat.clone());
    }
    let covering = parsed().find(|(p, _)| {
        p.subtree == path.subtree && fields::covers_all(&p.segments, &path.segments)
    });
    if let Some((_, cat)) = covering {
        return Some(cat.clone());
    }
    parsed()
        .filter(|(p, _)| {
            p.subtree
                && p.segments.len() <= path.segments.len()
                && fields::covers_all(&p.segments, &path.segments[..p.segments.len()])
        })
        .max_by_key(|(p, _)| p.segments.len())
        .map(|(_, cat)| cat.clone())
}

impl PolicyDiff {
    /// The report as text: one line per change, grouped by partner, marked `+` when the change
    /// discloses more and `-` otherwise, and a closing verdict.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut last: Option<&str> = None;
        for c in &self.changes {
            if last != Some(c.partner.as_str()) {
                out.push_str(&format!("{}:\n", c.partner));
                last = Some(&c.partner);
            }
            let mark = if c.discloses_more { '+' } else { '-' };
            out.push_str(&format!("  {mark} {}\n", c.text));
        }
        if self.changes.is_empty() {
            out.push_str("no change in what any partner receives\n");
        } else if self.discloses_more {
            out.push_str(
                "this change DISCLOSES MORE: something starts being sent (sign-off needed)\n",
            );
        } else {
            out.push_str("this change discloses nothing new\n");
        }
        out
    }
}

#[cfg(test)]
mod tests;
