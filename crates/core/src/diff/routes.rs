//! Which routes of the two policies take which requests. Routes are paired by shape (parameter
//! names ignored: `{id}` and `{ticket}` match the same requests) and, where routes of one shape
//! are split by method, by a shared method; methods are compared per shape. Then every class of
//! requests — each template of either policy, and where two templates overlap the requests both
//! match — is routed under each policy, so that requests that change routes are compared too: a
//! literal route removed from under a broader template, routes of equal specificity reordered,
//! routes of one shape split or merged by method.
use std::collections::BTreeSet;

use super::{names, route, route_added, route_label, Builder};
use crate::policy::route::same_shape;
use crate::policy::{Partner, Route, RouteMatch, RouteSegment};

pub(super) fn routes(b: &mut Builder<'_>, o: &Partner, n: &Partner) {
    for r in &n.routes {
        match counterpart(&o.routes, r) {
            Some(old_route) => route(b, n, old_route, r),
            None => route_added(b, n, r),
        }
    }
    for r in o
        .routes
        .iter()
        .filter(|r| counterpart(&n.routes, r).is_none())
    {
        route_removed(b, n, r);
    }
    methods(b, o, n);
    moved(b, o, n);
}

/// The route of `routes` that stands for `r`: the same shape and a shared method, else the
/// first of the same shape.
fn counterpart<'r>(routes: &'r [Route], r: &Route) -> Option<&'r Route> {
    let shaped = || {
        routes
            .iter()
            .filter(|x| same_shape(&x.segments, &r.segments))
    };
    shaped()
        .find(|x| x.methods.iter().any(|m| r.methods.contains(m)))
        .or_else(|| shaped().next())
}

fn route_removed(b: &mut Builder<'_>, p: &Partner, r: &Route) {
    let id = &p.id;
    let label = route_label(r);
    let path = render(&r.segments);
    let taken = r
        .methods
        .iter()
        .any(|m| matches!(p.match_route(&path, m), RouteMatch::Found(_)));
    let text = if taken {
        format!("{id}: the route {label} is removed, and another route takes its requests (below)")
    } else {
        format!("{id} will STOP receiving anything on {label} (route removed)")
    };
    let subject = Some(r.template.clone());
    b.push(
        id,
        Some(&label),
        "route_removed",
        subject,
        (None, None),
        false,
        text,
    );
}

/// Methods added or removed, per shape both policies have (the union of its routes' methods).
fn methods(b: &mut Builder<'_>, o: &Partner, n: &Partner) {
    let id = &n.id;
    let mut done: Vec<&Route> = Vec::new();
    for r in &n.routes {
        if done.iter().any(|d| same_shape(&d.segments, &r.segments)) {
            continue;
        }
        done.push(r);
        let union = |routes: &[Route]| -> Vec<String> {
            let mut all: Vec<String> = Vec::new();
            for x in routes
                .iter()
                .filter(|x| same_shape(&x.segments, &r.segments))
            {
                for m in &x.methods {
                    if !all.contains(m) {
                        all.push(m.clone());
                    }
                }
            }
            all
        };
        let (old, new) = (union(&o.routes), union(&n.routes));
        if old.is_empty() {
            continue; // a new shape: reported as a new route
        }
        let label = route_label(r);
        names(
            b,
            id,
            Some(&label),
            "method",
            &old,
            &new,
            true,
            |m, added| {
                if added {
                    format!("{id} will also accept {m} on {}", r.template)
                } else {
                    format!("{id} will no longer accept {m} on {}", r.template)
                }
            },
        );
    }
}

/// Requests both policies take, by another route than the one [`counterpart`] compared, or
/// taken now where a more specific route refused their method before: compared on those
/// requests (labelled with their path and methods).
fn moved(b: &mut Builder<'_>, o: &Partner, n: &Partner) {
    let verbs: BTreeSet<&str> = o
        .routes
        .iter()
        .chain(&n.routes)
        .flat_map(|r| r.methods.iter().map(String::as_str))
        .collect();
    let mut seen = Seen::default();
    for class in classes(o, n) {
        let (moves, opens) = routed(o, n, &class, &verbs, &mut seen);
        for ((oi, ni), methods) in moves {
            report_move(b, n, (&o.routes[oi], &n.routes[ni]), &class, &methods);
        }
        for (ni, methods) in opens {
            report_open(b, n, &n.routes[ni], &class, &methods);
        }
    }
}

/// The (old, new) route pairs and the new routes already reported for a method, by index: a
/// pair is reported once, for the first class that shows it.
#[derive(Default)]
struct Seen {
    moves: Vec<(usize, usize, String)>,
    opens: Vec<(usize, String)>,
}

/// Per (old, new) route pair by index, the methods whose requests move between them.
type Moves = Vec<((usize, usize), Vec<String>)>;
/// Per new route by index, the methods it takes that were refused before.
type Opens = Vec<(usize, Vec<String>)>;

/// Moves and newly taken methods of `class`.
fn routed(
    o: &Partner,
    n: &Partner,
    class: &str,
    verbs: &BTreeSet<&str>,
    seen: &mut Seen,
) -> (Moves, Opens) {
    let mut moves = Vec::new();
    let mut opens = Vec::new();
    for &m in verbs {
        let new = match n.match_route(class, m) {
            RouteMatch::Found(r) => r,
            _ => continue,
        };
        let ni = index(&n.routes, new);
        match o.match_route(class, m) {
            RouteMatch::Found(old) => {
                let oi = index(&o.routes, old);
                let paired = counterpart(&o.routes, new).is_some_and(|c| std::ptr::eq(c, old));
                if paired || seen.moves.contains(&(oi, ni, m.to_string())) {
                    continue;
                }
                seen.moves.push((oi, ni, m.to_string()));
                add(&mut moves, (oi, ni), m);
            }
            _ => {
                // Refused before. Where no old route of this shape took `m`, `methods`
                // reports the method; otherwise a more specific route owned these requests
                // and lacked `m`, or the old routes of this shape were split by method.
                let shape_took = o.routes.iter().any(|x| {
                    same_shape(&x.segments, &new.segments) && x.methods.iter().any(|y| y == m)
                });
                if !shape_took || seen.opens.contains(&(ni, m.to_string())) {
                    continue;
                }
                seen.opens.push((ni, m.to_string()));
                add(&mut opens, ni, m);
            }
        }
    }
    (moves, opens)
}

/// Requests of `class` another route takes now: compared on them.
fn report_move(
    b: &mut Builder<'_>,
    n: &Partner,
    (old, new): (&Route, &Route),
    class: &str,
    methods: &[String],
) {
    let id = &n.id;
    let (old_view, new_view) = (view(old, class, methods), view(new, class, methods));
    let label = route_label(&new_view);
    b.push(
        id,
        Some(&label),
        "route_changed",
        Some(class.to_string()),
        (Some(route_label(old)), Some(route_label(new))),
        false,
        format!(
            "{id}: requests to {label} will be taken by the route {} instead of {}",
            route_label(new),
            route_label(old)
        ),
    );
    unchecked_segments(b, n, (old, new), &label);
    route(b, n, &old_view, &new_view);
}

/// Requests of `class` refused before and taken now: everything sent on them is new.
fn report_open(b: &mut Builder<'_>, n: &Partner, new: &Route, class: &str, methods: &[String]) {
    let id = &n.id;
    let new_view = view(new, class, methods);
    let label = route_label(&new_view);
    b.push(
        id,
        Some(&label),
        "method_added",
        Some(methods.join(", ")),
        (None, Some(route_label(new))),
        true,
        format!(
            "{id} will also accept {label}, refused before, through the route {}",
            route_label(new)
        ),
    );
    // Against a route that sent nothing.
    let mut nothing = new_view.clone();
    nothing.filter = None;
    nothing.fields.clear();
    nothing.query.clear();
    nothing.headers.clear();
    nothing.json_types.clear();
    nothing.decode.clear();
    nothing.stream = None;
    route(b, n, &nothing, &new_view);
}

/// On a partner that honours opt-outs every path parameter is checked against them; a value
/// that moves from a parameter of the old route to a literal of the new one is no longer.
fn unchecked_segments(b: &mut Builder<'_>, p: &Partner, (o, n): (&Route, &Route), label: &str) {
    if p.honor_optouts.is_empty() {
        return;
    }
    for (i, pair) in o.segments.iter().zip(&n.segments).enumerate() {
        if let (RouteSegment::Param(_), RouteSegment::Literal(_)) = pair {
            b.push(
                &p.id,
                Some(label),
                "url_optout_check_dropped",
                Some(format!("path segment {}", i + 1)),
                (None, None),
                true,
                format!(
                    "{}: requests to {label} will no longer have path segment {} checked against the opt-outs",
                    p.id,
                    i + 1
                ),
            );
        }
    }
}

fn add<K: PartialEq>(groups: &mut Vec<(K, Vec<String>)>, key: K, method: &str) {
    match groups.iter_mut().find(|(k, _)| *k == key) {
        Some((_, methods)) => methods.push(method.to_string()),
        None => groups.push((key, vec![method.to_string()])),
    }
}

fn index(routes: &[Route], r: &Route) -> usize {
    routes.iter().position(|x| std::ptr::eq(x, r)).unwrap_or(0)
}

/// `r` restricted to `methods` on the requests of `class`, for labels and comparing.
fn view(r: &Route, class: &str, methods: &[String]) -> Route {
    let mut view = r.clone();
    view.template = class.to_string();
    view.methods = methods.to_vec();
    view
}

/// Every template of either policy and the overlap of every two templates of one length, as
/// paths: a parameter stays `{name}`, which only a parameter of a template matches.
fn classes(o: &Partner, n: &Partner) -> Vec<String> {
    let all: Vec<&Route> = o.routes.iter().chain(&n.routes).collect();
    let mut out: Vec<String> = Vec::new();
    let mut push = |path: String| {
        if !out.contains(&path) {
            out.push(path);
        }
    };
    for (i, x) in all.iter().enumerate() {
        push(render(&x.segments));
        for y in &all[i + 1..] {
            if let Some(meet) = meet(&x.segments, &y.segments) {
                push(render(&meet));
            }
        }
    }
    out
}

/// The requests two templates both match, as a template: a literal where either has one.
fn meet(x: &[RouteSegment], y: &[RouteSegment]) -> Option<Vec<RouteSegment>> {
    if x.len() != y.len() {
        return None;
    }
    x.iter()
        .zip(y)
        .map(|pair| match pair {
            (RouteSegment::Literal(a), RouteSegment::Literal(b)) => {
                (a == b).then(|| RouteSegment::Literal(a.clone()))
            }
            (RouteSegment::Literal(a), RouteSegment::Param(_))
            | (RouteSegment::Param(_), RouteSegment::Literal(a)) => {
                Some(RouteSegment::Literal(a.clone()))
            }
            (RouteSegment::Param(p), RouteSegment::Param(_)) => {
                Some(RouteSegment::Param(p.clone()))
            }
        })
        .collect()
}

fn render(segments: &[RouteSegment]) -> String {
    let mut path = String::new();
    for s in segments {
        path.push('/');
        match s {
            RouteSegment::Literal(l) => path.push_str(l),
            RouteSegment::Param(p) => {
                path.push('{');
                path.push_str(p);
                path.push('}');
            }
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}
