/*!
Request paths and route templates: [`normalize_path`] turns the path a caller sent into the one
form that is matched and forwarded (or refuses it), [`parse_typed_template`] checks a route's
`path:` from the policy, and [`Partner::match_route`] picks the route a normalised path belongs
to.

Rules (README "Requests through the gateway", plus the choices written down here):
- A request path starts with `/`. `.` and `..` segments, empty segments (`//`), a backslash,
  control characters, characters outside RFC 3986 `pchar`, malformed `%` escapes, and escapes
  of `/` `\` `.` or a control character (`%2f` `%5C` `%2E` `%00`, any case) are refused.
  A double-encoded escape (`%25` followed by two hex digits, e.g. `%252f`) is refused too: a
  partner that decodes twice would see the character the gateway refused.
  A segment whose escapes are not UTF-8 is refused, and so is one that Unicode compatibility
  normalisation (NFKC, which some servers apply), with invisible format characters dropped,
  turns into `.` or `..` or gives a `/`, a `\` or an escape (fullwidth `．．` as
  `%EF%BC%8E%EF%BC%8E`, `／` as `%EF%BC%8F`, `％2e` as `%EF%BC%852e`).
- Escapes of unreserved characters (`ALPHA DIGIT - _ ~`) are decoded, so `/v1/ship%6dents` is
  `/v1/shipments`; every other escape is kept exactly as sent.
- **Trailing slash**: one final `/` is kept and is significant. `/v1/shipments/` matches only a
  template that also ends in `/`; against `/v1/shipments` it is not found (403
  `route_not_allowed`), never silently rewritten. In [`RouteSegment`] terms a trailing slash is
  a final empty `Literal("")`, and `/` alone is `[Literal("")]`.
- **Precedence**: among the templates that match a path, the one with the most literal
  segments owns it (`/v1/tickets/search` beats `/v1/tickets/{id}`); on a tie the first
  declared wins. The method is then looked up among the routes with exactly that template
  shape (the same template may be declared twice with disjoint methods). If none of them lists
  the method the answer is [`RouteMatch::MethodNotAllowed`], even if a less specific template
  would have accepted it: the most specific template decides, so `GET /v1/tickets/search` is
  not forwarded as a ticket id when only `POST /v1/tickets/search` is declared.
*/
use super::model::{Partner, Route, RouteSegment};
use unicode_normalization::UnicodeNormalization;

/// The outcome of looking a request up in a partner's routes.
#[derive(Debug, Clone, Copy)]
pub enum RouteMatch<'a> {
    Found(&'a Route),
    /// A route owns the path but does not list the method (405 `method_not_allowed`).
    MethodNotAllowed,
    /// No route matches the path (403 `route_not_allowed`).
    NotFound,
}

/// Normalises a request path (without its query) or says why it is refused (400 `bad_request`).
pub fn normalize_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("path {raw:?} does not start with `/`"));
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                return Err(format!(
                    "malformed percent escape at the end of path {raw:?}"
                ));
            };
            let Some(value) = hex_pair(h, l) else {
                return Err(format!(
                    "malformed percent escape {:?} in path",
                    escape_text(bytes, i)
                ));
            };
            match value {
                b'/' | b'\\' | b'.' => {
                    return Err(format!(
                        "percent-encoded {:?} ({}) is not allowed in a path",
                        value as char,
                        escape_text(bytes, i)
                    ))
                }
                0x00..=0x1f | 0x7f => {
                    return Err(format!(
                        "percent-encoded control character ({}) is not allowed in a path",
                        escape_text(bytes, i)
                    ))
                }
                b'%' if escaped_hex_pair_follows(&bytes[i + 3..]) => {
                    return Err(format!(
                        "double-encoded escape ({}...) is not allowed in a path",
                        escape_text(bytes, i)
                    ))
                }
                v if is_unreserved(v) => out.push(v as char),
                _ => out.push_str(&raw[i..i + 3]),
            }
            i += 3;
            continue;
        }
        if b == b'\\' {
            return Err("backslash is not allowed in a path".to_string());
        }
        if b == b'?' || b == b'#' {
            return Err(format!(
                "{:?} is not allowed in a path (send the path without its query)",
                b as char
            ));
        }
        if b < 0x20 || b == 0x7f {
            return Err("control character in path".to_string());
        }
        if b >= 0x80 {
            return Err("non-ASCII character in path (percent-encode it)".to_string());
        }
        if !(b == b'/' || is_pchar(b)) {
            return Err(format!(
                "character {:?} is not allowed in a path (percent-encode it)",
                b as char
            ));
        }
        out.push(b as char);
        i += 1;
    }
    check_segments(&out)?;
    Ok(out)
}

/// Refuses `.`/`..` segments and empty segments other than one trailing `/`.
fn check_segments(path: &str) -> Result<(), String> {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (n, segment) in segments.iter().enumerate() {
        match *segment {
            "" if n != last => return Err("empty path segment (`//`) is not allowed".to_string()),
            "." | ".." => return Err(format!("{segment:?} path segment is not allowed")),
            _ if !segment.is_empty() && matches!(as_servers_read(segment), "" | "." | "..") => {
                return Err(format!(
                    "{segment:?} path segment is not allowed (servers that drop `;parameters` or blanks read it as {:?})",
                    as_servers_read(segment)
                ))
            }
            _ if segment.contains('%') => check_decoded(segment)?,
            _ => {}
        }
    }
    Ok(())
}

/// A segment's escapes must decode to UTF-8 (an overlong `%C0%AE` was `.` to lenient decoders),
/// and the decoded text, with invisible format characters dropped, must not turn into `.`,
/// `..`, an empty segment (blanks and `;parameters` cut as `as_servers_read` cuts them), a
/// `/`, a `\` or an escape under Unicode compatibility normalisation (NFKC), which
/// some servers and frameworks apply to paths: fullwidth `%EF%BC%8E%EF%BC%8E` (`．．`) is `..`
/// there, `%EF%BC%8F` (`／`) a `/`, `．` zero-width space `．` is `..` once the space is dropped.
fn check_decoded(segment: &str) -> Result<(), String> {
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| {
            format!("{segment:?} path segment is not allowed (its escapes are not UTF-8)")
        })?;
    if decoded.is_ascii() {
        return Ok(());
    }
    // Read as the most lenient server would: invisible format characters dropped (a
    // zero-width joiner is part of ordinary Persian or emoji text, so it is not refused
    // as such), then NFKC.
    let folded: String = crate::optout::id::without_invisible(&decoded)
        .nfkc()
        .collect();
    let read = folded.split(';').next().unwrap_or_default().trim();
    let escape = crate::optout::id::has_percent_escape(&folded);
    if matches!(read, "" | "." | "..") || folded.contains(['/', '\\']) || escape {
        return Err(format!(
            "{segment:?} path segment is not allowed (Unicode normalisation makes it {folded:?})"
        ));
    }
    Ok(())
}

/// A segment as servers that drop `;parameters` (Tomcat, Jetty, Spring) and surrounding
/// blanks read it: `..;x` and `..%20` are `..` there, and `;x` or `%20` an empty segment
/// (`//`, which they then merge away).
fn as_servers_read(segment: &str) -> &str {
    let cut = [";", "%3B", "%3b"]
        .iter()
        .filter_map(|p| segment.find(p))
        .min()
        .unwrap_or(segment.len());
    // Other blanks are control characters, refused before this.
    let mut s = &segment[..cut];
    while let Some(t) = s.strip_prefix("%20").or_else(|| s.strip_suffix("%20")) {
        s = t;
    }
    s
}

fn hex_pair(h: u8, l: u8) -> Option<u8> {
    let d = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    Some(d(h)? * 16 + d(l)?)
}

/// After a `%25`: do the next characters (each possibly an unreserved escape) spell two hex digits?
fn escaped_hex_pair_follows(rest: &[u8]) -> bool {
    let mut digits = 0;
    let mut i = 0;
    while digits < 2 {
        let c = match rest.get(i) {
            Some(b'%') => match (rest.get(i + 1), rest.get(i + 2)) {
                (Some(&h), Some(&l)) => {
                    i += 3;
                    match hex_pair(h, l) {
                        Some(v) => v,
                        None => return false,
                    }
                }
                _ => return false,
            },
            Some(&c) => {
                i += 1;
                c
            }
            None => return false,
        };
        if !c.is_ascii_hexdigit() {
            return false;
        }
        digits += 1;
    }
    true
}

fn escape_text(bytes: &[u8], at: usize) -> String {
    String::from_utf8_lossy(&bytes[at..bytes.len().min(at + 3)]).into_owned()
}

/// RFC 3986 unreserved, minus `.` (an encoded dot is refused, a literal one kept).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')
}

/// RFC 3986 `pchar` without `%` (escapes are handled apart): unreserved, sub-delims, `:` and `@`.
pub(crate) fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// Parses a route template from the policy (`/v1/tickets/{id}`) into segments.
/// The error is a reason, without the template (the caller quotes it).
#[cfg(test)]
pub fn parse_template(template: &str) -> Result<Vec<RouteSegment>, String> {
    parse_typed_template(template).map(|(segments, _)| segments)
}

/// Parses a route template from the policy (`/v1/tickets/{id}`) into segments, also returning
/// the parameters typed as customer ids (`{cid:subject}`), in order. The error is a reason,
/// without the template (the caller quotes it).
pub fn parse_typed_template(template: &str) -> Result<(Vec<RouteSegment>, Vec<String>), String> {
    let Some(rest) = template.strip_prefix('/') else {
        return Err("must start with `/`".to_string());
    };
    for (c, what) in [
        ('%', "`%` (write the path decoded)"),
        ('\\', "`\\`"),
        ('?', "`?` (a route has no query)"),
        ('#', "`#`"),
    ] {
        if template.contains(c) {
            return Err(format!("{what} is not allowed"));
        }
    }
    if template.contains("//") {
        return Err("empty segment (`//`) is not allowed".to_string());
    }
    let mut segments = Vec::new();
    let mut params: Vec<&str> = Vec::new();
    let mut subjects = Vec::new();
    for segment in rest.split('/') {
        if segment == "." || segment == ".." {
            return Err(format!("`{segment}` segments are not allowed"));
        }
        if let Some(inner) = segment.strip_prefix('{') {
            let Some(name) = inner.strip_suffix('}') else {
                return Err(format!(
                    "`{{` and `}}` must wrap a whole segment, found {segment:?}"
                ));
            };
            let (name, kind) = match name.split_once(':') {
                Some((name, "subject")) => (name, Some(name)),
                Some((_, kind)) => {
                    return Err(format!(
                        "unknown parameter type {kind:?} in {segment:?} (the only type is `subject`: `{{cid:subject}}`)"
                    ))
                }
                None => (name, None),
            };
            if name.is_empty() {
                return Err("empty parameter `{}`".to_string());
            }
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "invalid parameter name {name:?} (expected letters, digits and `_`)"
                ));
            }
            if params.contains(&name) {
                return Err(format!("parameter `{{{name}}}` appears twice"));
            }
            params.push(name);
            subjects.extend(kind.map(str::to_string));
            segments.push(RouteSegment::Param(name.to_string()));
            continue;
        }
        if segment.contains('{') || segment.contains('}') {
            return Err(format!(
                "`{{` and `}}` must wrap a whole segment, found {segment:?}"
            ));
        }
        if let Some(c) = segment
            .chars()
            .find(|&c| !c.is_ascii() || !is_pchar(c as u8))
        {
            return Err(format!(
                "character {c:?} can never appear in a normalised request path"
            ));
        }
        segments.push(RouteSegment::Literal(segment.to_string()));
    }
    Ok((segments, subjects))
}

/// Does `path` (normalised) match these segments?
pub fn segments_match(segments: &[RouteSegment], path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut parts = rest.split('/');
    for segment in segments {
        let Some(part) = parts.next() else {
            return false;
        };
        let ok = match segment {
            RouteSegment::Literal(lit) => lit == part,
            RouteSegment::Param(_) => !part.is_empty(),
        };
        if !ok {
            return false;
        }
    }
    parts.next().is_none()
}

/// Number of literal segments: the specificity of a template.
pub(crate) fn literal_count(segments: &[RouteSegment]) -> usize {
    segments
        .iter()
        .filter(|s| matches!(s, RouteSegment::Literal(_)))
        .count()
}

/// Same shape: equal length, equal literals, parameters in the same positions (names ignored).
pub fn same_shape(a: &[RouteSegment], b: &[RouteSegment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (RouteSegment::Literal(x), RouteSegment::Literal(y)) => x == y,
            (RouteSegment::Param(_), RouteSegment::Param(_)) => true,
            _ => false,
        })
}

impl Partner {
    /// Finds the route for a normalised path (see [`normalize_path`]) and an uppercase method.
    pub fn match_route(&self, path: &str, method: &str) -> RouteMatch<'_> {
        let Some(mut owners) = self.owning_routes(path) else {
            return RouteMatch::NotFound;
        };
        owners
            .find(|r| r.methods.iter().any(|m| m == method))
            .map_or(RouteMatch::MethodNotAllowed, RouteMatch::Found)
    }

    /// The routes a normalised path belongs to, whatever the method: every route with the
    /// template shape of its owner ([`Self::path_owner`]), in declaration order. `None` when no
    /// route owns the path.
    fn owning_routes(&self, path: &str) -> Option<impl Iterator<Item = &Route>> {
        let owner = self.path_owner(path).and_then(|i| self.routes.get(i))?;
        let routes = self.routes.iter();
        Some(routes.filter(move |r| same_shape(&r.segments, &owner.segments)))
    }

    /// The methods the routes owning a normalised path take, as a 405's `Allow` header lists
    /// them (`GET, POST`): those of every route with the owner's template shape, in declaration
    /// order, each once. Empty when no route owns the path.
    pub fn allowed_methods(&self, path: &str) -> String {
        let mut methods: Vec<&str> = Vec::new();
        let owners = self.owning_routes(path).into_iter().flatten();
        for method in owners.flat_map(|r| r.methods.iter()) {
            if !methods.contains(&method.as_str()) {
                methods.push(method);
            }
        }
        methods.join(", ")
    }

    /// The index of the route whose template owns a normalised path, whatever the method: the
    /// most specific template, first declared on a tie (see the module docs). A request refused
    /// for its method is labelled with this route's template.
    pub fn path_owner(&self, path: &str) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (index, route) in self.routes.iter().enumerate() {
            if !segments_match(&route.segments, path) {
                continue;
            }
            let literals = literal_count(&route.segments);
            if best.is_none_or(|(_, n)| literals > n) {
                best = Some((index, literals));
            }
        }
        best.map(|(index, _)| index)
    }
}

#[cfg(test)]
mod tests;
