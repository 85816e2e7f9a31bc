/*!
Drift: the fields callers send that no policy path names. The filter removes them (that is
the default), and notes each one's path here in policy path syntax, with array indexes
collapsed to `[*]` ([`UnknownField`]); [`DriftTable`] keeps, per partner and route, the
distinct paths seen with counts and first and last seen, bounded in memory.

A drift path carries field names only, never a value. Member names are caller input too, and
some payloads key objects by data (`{"c-1042": {...}}`, `{"ana@example.com": ...}`): a
member name is written as itself only when it looks like a field name
([`is_field_name`]); any other name is written `*`, so such maps collapse into one path
(`customers.*`) and no customer id, e-mail address or other datum is ever kept as a path.

Time is handed in (Unix seconds): this crate reads no clock.
*/
use std::collections::BTreeMap;

#[cfg(test)]
mod tests;

/// Longest member name written as itself; longer names are written `*`.
pub const MAX_NAME_BYTES: usize = 64;

/// Most digits a member name written as itself may hold (`address_line2` and `sha256` pass;
/// customer ids such as `c-1001`, years, dates, UUIDs and phone numbers used as keys do not).
pub const MAX_NAME_DIGITS: usize = 3;

/// Most distinct unknown paths one request reports; further ones are counted, not listed.
pub const MAX_PATHS_PER_REQUEST: usize = 256;

/// Most distinct paths [`DriftTable`] keeps per route (the rest are counted as not listed).
pub const MAX_PATHS_PER_ROUTE: usize = 512;

/// What kind of value a field held (an object or array needs `.**` or named members to pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shapes {
    pub scalar: bool,
    pub object: bool,
    pub array: bool,
}

impl Shapes {
    /// The shape of a JSON value from its first byte.
    pub fn of_first_byte(byte: Option<u8>) -> Shapes {
        match byte {
            Some(b'{') => Shapes {
                object: true,
                ..Shapes::default()
            },
            Some(b'[') => Shapes {
                array: true,
                ..Shapes::default()
            },
            _ => Shapes {
                scalar: true,
                ..Shapes::default()
            },
        }
    }

    pub fn union(self, other: Shapes) -> Shapes {
        Shapes {
            scalar: self.scalar || other.scalar,
            object: self.object || other.object,
            array: self.array || other.array,
        }
    }

    /// True when an object or array was seen there (a plain path would refuse it).
    pub fn container(self) -> bool {
        self.object || self.array
    }

    /// `scalar`, `object`, `array`, joined with `|` when several were seen.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for (seen, name) in [
            (self.scalar, "scalar"),
            (self.object, "object"),
            (self.array, "array"),
        ] {
            if seen {
                names.push(name);
            }
        }
        names
    }
}

/// One distinct unknown field path in one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// Policy path syntax, array indexes as `[*]`, data-like member names as `*`.
    pub path: String,
    /// How many times the request held it.
    pub count: u64,
    pub shapes: Shapes,
}

impl UnknownField {
    /// One more occurrence of this path, holding a value of `shapes`.
    pub fn seen_again(&mut self, shapes: Shapes) {
        self.count += 1;
        self.shapes = self.shapes.union(shapes);
    }
}

/// Whether a member name is written as itself in a drift path: 1 to [`MAX_NAME_BYTES`] bytes,
/// an ASCII letter or `_` first, then ASCII letters, digits, `_` and `-`, with at most
/// [`MAX_NAME_DIGITS`] digits. Everything else (data used as keys, and names no policy path
/// can spell) is written `*`.
pub fn is_field_name(name: &[u8]) -> bool {
    let Some(first) = name.first() else {
        return false;
    };
    name.len() <= MAX_NAME_BYTES
        && (first.is_ascii_alphabetic() || *first == b'_')
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        && name.iter().filter(|b| b.is_ascii_digit()).count() <= MAX_NAME_DIGITS
}

/// Appends one member to a drift path: `.name`, or `.*` for a name that is not written.
pub fn push_member(path: &mut String, name: &[u8]) {
    if !path.is_empty() {
        path.push('.');
    }
    match std::str::from_utf8(name) {
        Ok(text) if is_field_name(name) => path.push_str(text),
        _ => path.push('*'),
    }
}

/// Appends one array element to a drift path.
pub fn push_element(path: &mut String) {
    path.push_str("[*]");
}

/// Adds one occurrence of `path` to a request's list of distinct unknown paths (at most
/// [`MAX_PATHS_PER_REQUEST`]). Returns the index of the path's entry, or `None` when the list
/// was full and the path new (it is then counted nowhere else; the list never shrinks, so the
/// same path would be refused again).
pub fn note(unknown: &mut Vec<UnknownField>, path: &str, shapes: Shapes) -> Option<usize> {
    if let Some(index) = unknown.iter().position(|f| f.path == path) {
        unknown[index].seen_again(shapes);
        return Some(index);
    }
    if unknown.len() >= MAX_PATHS_PER_REQUEST {
        return None;
    }
    unknown.push(UnknownField {
        path: path.to_string(),
        count: 1,
        shapes,
    });
    Some(unknown.len() - 1)
}

/// What the table knows of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub count: u64,
    /// Unix seconds.
    pub first_seen: i64,
    pub last_seen: i64,
    pub shapes: Shapes,
}

/// The unknown paths of one route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDrift {
    pub paths: BTreeMap<String, Seen>,
    /// Occurrences of paths not listed because the route already had
    /// [`MAX_PATHS_PER_ROUTE`] paths (or the request [`MAX_PATHS_PER_REQUEST`]).
    pub not_listed: u64,
}

/// Every route's unknown paths, keyed by partner id and route template (names from the
/// policy, never from the request).
#[derive(Debug, Clone, Default)]
pub struct DriftTable {
    /// Partner id, then route template: a request's lookup borrows both names.
    routes: BTreeMap<String, BTreeMap<String, RouteDrift>>,
}

impl DriftTable {
    pub fn new() -> DriftTable {
        DriftTable::default()
    }

    /// Records one request's unknown fields on `partner`'s `route` at `now` (Unix seconds);
    /// `not_listed` is what the request could not list itself.
    pub fn record(
        &mut self,
        partner: &str,
        route: &str,
        unknown: &[UnknownField],
        not_listed: u64,
        now: i64,
    ) {
        if unknown.is_empty() && not_listed == 0 {
            return;
        }
        let drift = self.route_mut(partner, route);
        drift.not_listed += not_listed;
        for field in unknown {
            if let Some(seen) = drift.paths.get_mut(&field.path) {
                seen.count += field.count;
                seen.last_seen = seen.last_seen.max(now);
                seen.shapes = seen.shapes.union(field.shapes);
            } else if drift.paths.len() < MAX_PATHS_PER_ROUTE {
                drift.paths.insert(
                    field.path.clone(),
                    Seen {
                        count: field.count,
                        first_seen: now,
                        last_seen: now,
                        shapes: field.shapes,
                    },
                );
            } else {
                drift.not_listed += field.count;
            }
        }
    }

    /// The route's entry, made on its first drift (names are copied only then).
    fn route_mut(&mut self, partner: &str, route: &str) -> &mut RouteDrift {
        if !self.routes.contains_key(partner) {
            self.routes.insert(partner.to_string(), BTreeMap::new());
        }
        let routes = self.routes.get_mut(partner).expect("inserted above");
        if !routes.contains_key(route) {
            routes.insert(route.to_string(), RouteDrift::default());
        }
        routes.get_mut(route).expect("inserted above")
    }

    /// Every route with drift, sorted by partner and route.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str, &RouteDrift)> {
        self.routes.iter().flat_map(|(partner, routes)| {
            routes
                .iter()
                .map(move |(route, drift)| (partner.as_str(), route.as_str(), drift))
        })
    }
}

/// The allow-list line that would pass a drift path, and whether it can be suggested at all:
/// a path with a `*` member stands for names that look like data, which no line should open
/// up wholesale; an object or array could pass only as a whole subtree (`.**`), and drift does
/// not see what is inside it (IP address or browser data, say), so no line is suggested for it.
pub fn suggestion(path: &str, shapes: Shapes) -> Suggestion {
    let Some(names) = member_names(path) else {
        return Suggestion::NotADriftPath;
    };
    if names.contains(&"*") {
        Suggestion::DataLikeNames
    } else if names.iter().copied().any(names_network_or_browser_data)
        || names.windows(2).any(|w| {
            network_address(&snake_case(w[0]), &snake_case(w[1]))
                || names_network_or_browser_data(&format!("{}_{}", w[0], w[1]))
        })
    {
        Suggestion::NetworkOrBrowserData
    } else if customer_id_path(&names) {
        Suggestion::CustomerId
    } else if shapes.container() {
        Suggestion::Container
    } else {
        Suggestion::Allow(path.to_string())
    }
}

/// See [`suggestion`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suggestion {
    /// A plain allow line for scalar values.
    Allow(String),
    /// Not suggested: an object or array, whose members drift does not see; a line passing it
    /// whole could pass anything inside it.
    Container,
    /// Not suggested: the path stands for member names that look like data.
    DataLikeNames,
    /// Not suggested: a member named like IP address, domain or browser data, which the
    /// privacy policy promises never to join to personal data on the way out.
    NetworkOrBrowserData,
    /// Not suggested: a member named like a customer's identifier (`customerId`, `user_id`,
    /// `cust_no`), which could hand a partner the raw id the route's subject is (a spelling
    /// the opt-out check does not read as the subject); allow it deliberately, pseudonymised
    /// where the partner only needs to tell customers apart.
    CustomerId,
    /// Not suggested: not a path the gateway writes (a member that is no field name, `**`, an
    /// index other than `[*]`): the answer did not come from a gateway's drift table.
    NotADriftPath,
}

/// The member names of a drift path as the gateway writes it (see [`push_member`]): members
/// joined by `.`, each a field name or `*`, each followed by any number of `[*]`; a path may
/// also start with `[*]` (a body that is an array). `None` for anything else.
fn member_names(path: &str) -> Option<Vec<&str>> {
    let mut names = Vec::new();
    for (i, segment) in path.split('.').enumerate() {
        let mut name = segment;
        while let Some(rest) = name.strip_suffix("[*]") {
            name = rest;
        }
        match name {
            "" if i == 0 && name.len() < segment.len() => continue,
            "*" => names.push(name),
            _ if is_field_name(name.as_bytes()) => names.push(name),
            _ => return None,
        }
    }
    Some(names)
}

/// Whether a path's last member reads as a customer's identifier: [`names_customer_id`], an
/// id word alone (`uid`, `cid`), or an id word under a member named for a person or their
/// account (`customer.id`, `customers[*].id`, `user.uuid`, `customer._id`,
/// `customer.external_id`).
fn customer_id_path(names: &[&str]) -> bool {
    let Some((last, before)) = names.split_last() else {
        return false;
    };
    let id_word = |name: &str| {
        let snake = snake_case(name);
        let snake = snake.trim_start_matches('_');
        // `id`, `_id`, `external_id`, `idNumber`: any of its words an id word.
        snake
            .split('_')
            .any(|w| ID_WORDS.contains(&w) || w == "identity")
    };
    let person = |name: &str| {
        let singular = snake_case(name);
        let singular = singular.strip_suffix('s').unwrap_or(&singular);
        WHO.contains(&singular) || singular == "people"
    };
    names_customer_id(last)
        || ["uid", "cid", "uuid", "guid"].contains(&snake_case(last).as_str())
        || (id_word(last) && before.last().is_some_and(|name| person(name)))
}

/// Words for a person or their account, with an id word in [`names_customer_id`].
const WHO: &[&str] = &[
    "customer",
    "cust",
    "user",
    "client",
    "account",
    "acct",
    "member",
    "subscriber",
    "person",
    "contact",
    "buyer",
    "shopper",
    "consumer",
    "patient",
    "profile",
    "subject",
    "owner",
    "recipient",
    "cardholder",
    "holder",
    "citizen",
    "taxpayer",
    "employee",
    "payer",
    "payee",
    "guest",
    "visitor",
    "patron",
    "passenger",
    "traveler",
    "traveller",
    "student",
    "crm",
    "loyalty",
    "lead",
    "prospect",
    "usr",
];

/// Words for an identifier, with a person word in [`names_customer_id`].
const ID_WORDS: &[&str] = &[
    "id",
    "ids",
    "uuid",
    "guid",
    "uid",
    "pk",
    "no",
    "num",
    "number",
    "ref",
    "key",
    "identifier",
    "code",
    "reference",
];

/// Whether a member name reads as a customer's identifier: a word for a person or their
/// account and an id word (`id`, `uuid`, `no`, `number`, `ref`, `key`, `code`…), in either
/// order, as separate words or run together (`customerId`, `cust_no`, `userid`,
/// `account_number`, `customerKey`, `customer_external_id`, `id_customer`, `customerId2`).
fn names_customer_id(name: &str) -> bool {
    let snake = snake_case(name);
    // Each word without the digits it ends with (`customer_id2`, `customerId2`).
    let words: Vec<&str> = snake
        .split('_')
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()))
        .filter(|w| !w.is_empty())
        .collect();
    let run_together = |word: &str| {
        ID_WORDS.iter().any(|id| {
            word.strip_suffix(id)
                .is_some_and(|who| WHO.iter().any(|w| who.ends_with(w)))
        })
    };
    let who = words.iter().any(|w| WHO.contains(w));
    let id = words.iter().any(|w| ID_WORDS.contains(w));
    words.iter().any(|w| run_together(w)) || (who && id)
}

/// Whether a member name reads as IP address, domain or browser data. A heuristic that errs
/// towards holding a name back (a name held back is only not suggested): the name is read in
/// snake case (`clientIPs` as `client_ips`, `ip-address` as `ip_address`, `IPv6` as `ipv6`)
/// and matched by word
/// and by fragment:
/// - IP addresses: a word `ip`, `ips`, `ip4`, `ip6`, `ipv4`, `ipv6`, `ipaddr`, `ipaddress`,
///   `iplist` (also with `v4`/`v6` before `addr…`), or `ip` after a word saying whose
///   (`clientip`, `srcip`, `remoteip`, `geoip`; not `zip` or `ship`), or a peer/remote/client/
///   source address (`peer_address`, `src_addr`, `wan_address`), `ip1`, `xff`, `cidr`,
///   `netblock`, `dns…`, `tld`, anything `forwarded`; a location (`geo`, `geolocation`, `gps`,
///   `lat`/`lng`, `latitude`, `longitude`, `coordinates`, `geohash`), which an IP address is
///   often turned into;
/// - browser data: anything with `agent` (`user_agent`, `http_agent`), `ua`/`uastring`,
///   `referer`/`referrer`, `cookie`, `browser`, `fingerprint`, `screen…`, `timezone`/`tz`,
///   `accept_language`, `locale`, a MAC address (`mac`, `mac_addr`), `navigator…`, request
///   `headers`, fingerprints (`webgl…`, `canvas…`, `fonts`, `plugins`, `color_depth`, `dnt`),
///   tracking ids (`visitor_id`, `anonymous_id`, `distinct_id`, `click_id`, `gclid`, `fbclid`,
///   `msclkid`, `fbp`, `ga`, `utm_source`…; not a parcel's `tracking_number`);
/// - domains and addresses on the web: `domain`, `host…`, `origin`, a word ending in `url` or
///   `uri` (`website_url`, `landingpageurl`).
fn names_network_or_browser_data(name: &str) -> bool {
    let snake = snake_case(name.trim_end_matches(']'));
    const FRAGMENTS: &[&str] = &[
        "agent",
        "referer",
        "referrer",
        "cookie",
        "browser",
        "fingerprint",
        "forwarded",
        "domain",
        "geoip",
        "accept_language",
        "remote_addr",
        "remoteaddr",
        "peer_addr",
        "peeraddr",
        "clientaddr",
        "mac_addr",
        "macaddr",
        "inetaddr",
        "inet_addr",
        "session",
        "advertising",
        "ipaddr",
        "ipv4",
        "ipv6",
        "client_addr",
        "srcaddr",
        "src_addr",
        "sourceaddr",
        "source_addr",
        "navigator",
        "visitor_id",
        "visitorid",
        "anonymous_id",
        "distinct_id",
        "click_id",
        "clickid",
        "clkid",
        "clid",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
        "utm_id",
        "geoloc",
        "geohash",
        "webgl",
        "canvas",
        "color_depth",
        "do_not_track",
        "request_header",
        "http_header",
        "dns_name",
        "time_zone",
        "timezone",
        "sec_ch_",
    ];
    // Matched with the name's word breaks taken out.
    const RUN_TOGETHER: &[&str] = &[
        "fingerprint",
        "useragent",
        "acceptlang",
        "clienthint",
        "deviceid",
        "servername",
        "hwaddr",
        "netaddr",
        "macaddr",
        "remoteaddr",
        "hostaddr",
        "mailserver",
        "smtpserver",
        "domname",
        "donottrack",
        "globalprivacy",
        "sessionid",
        "androidid",
        "advertiserid",
        "devicememory",
        "pixelratio",
        "ja3",
        "ja4",
        "tlsfingerprint",
        "hardwareconcurrency",
        "touchpoints",
        "webdriver",
        "audiohash",
        "audiofingerprint",
        "innerwidth",
        "innerheight",
        "outerwidth",
        "outerheight",
    ];
    let words: Vec<&str> = snake.split('_').collect();
    // The name with its word breaks taken out: `fingerPrint` and `finger_print` as
    // `fingerprint`, `acceptLang` as `acceptlang`.
    let compact: String = words.concat();
    FRAGMENTS.iter().any(|f| snake.contains(f))
        || RUN_TOGETHER.iter().any(|f| compact.contains(f))
        || words.iter().copied().any(network_word)
        || words.windows(2).any(|w| network_address(w[0], w[1]))
        // `adId`, `ad_id` (not `load_id`).
        || words.windows(2).any(|w| w == ["ad", "id"])
        // `iP`, `Ip`: a name that is `ip` in any case.
        || name.trim_end_matches(']').eq_ignore_ascii_case("ip")
}

/// `wan_addr`, `public_address`, `client_port`: an address or port named by the network it is
/// on, not a postal one (`customer_address`, `private_address` stay suggestible).
fn network_address(owner: &str, word: &str) -> bool {
    const NETWORK: &[&str] = &[
        "client",
        "src",
        "source",
        "remote",
        "peer",
        "wan",
        "lan",
        "public",
        "server",
        "host",
        "inet",
        "bind",
        "listen",
        "gateway",
        "proxy",
        "nat",
        "mac",
        "net",
        "network",
        "socket",
        "tcp",
        "udp",
        "web",
        "internet",
        "hardware",
        "ethernet",
        "bluetooth",
        "wifi",
    ];
    matches!(
        word,
        "addr" | "address" | "addrs" | "addresses" | "port" | "ports"
    ) && NETWORK.contains(&owner)
}

/// One snake-case word of [`names_network_or_browser_data`].
fn network_word(word: &str) -> bool {
    const WORDS: &[&str] = &[
        "ip",
        "ips",
        "ip4",
        "ip6",
        "iplist",
        "ipaddress",
        "xff",
        "ua",
        "uastring",
        "mac",
        "origin",
        "tz",
        "timezone",
        "ipinfo",
        "ipcountry",
        "ipcity",
        "iplocation",
        "fqdn",
        "sni",
        "website",
        "href",
        "isp",
        "asn",
        "subnet",
        "ssid",
        "bssid",
        "viewport",
        "idfa",
        "gaid",
        "adid",
        "cidr",
        "netblock",
        "headers",
        "geo",
        "gps",
        "latitude",
        "longitude",
        "lat",
        "lng",
        "lon",
        "coordinates",
        "fbp",
        "ga",
        "dnt",
        "plugins",
        "fonts",
        "locale",
        "dns",
        "tld",
        "idfv",
        "gbraid",
        "wbraid",
        "hubspotutk",
        "netmask",
        "nameserver",
        "latlng",
        "latlong",
        "geopoint",
        "homepage",
        "inet",
        "inet6",
        "gpc",
        "dpr",
        "lang",
        "langs",
        "language",
        "languages",
        "origins",
        "vhost",
        "vhosts",
        "mx",
        "imei",
        "imsi",
        "meid",
        "udid",
        "fp",
        "etld",
        "subdomain",
    ];
    // Whose IP: `clientip`, `srcip`, … (a bare suffix would take `zip`, `ship`, `tip`).
    const OWNERS: &[&str] = &[
        "client",
        "src",
        "source",
        "remote",
        "peer",
        "real",
        "origin",
        "user",
        "host",
        "server",
        "local",
        "public",
        "private",
        "lan",
        "wan",
        "device",
        "geo",
        "visitor",
        "customer",
        "x",
        "forwarded",
        "request",
        "login",
        "signup",
        "last",
        "first",
        "connecting",
        "cfconnecting",
        "current",
        "my",
        "nat",
        "cust",
        "ext",
        "external",
        "internal",
        "dest",
        "dst",
        "target",
        "proxy",
        "router",
        "gw",
        "vpn",
        "caller",
        "sender",
        "mobile",
        "wifi",
        "home",
        "office",
        "new",
        "old",
        "prev",
        "registered",
        "registration",
        "order",
        "checkout",
        "payment",
    ];
    // `ip1`, `ip2`, `ipv4`…: `ip` and a number.
    let numbered_ip = word
        .strip_prefix("ip")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    WORDS.contains(&word)
        || numbered_ip
        || word.starts_with("host")
        || word.starts_with("screen")
        || ["url", "uri", "urls", "uris"]
            .iter()
            .any(|s| word.ends_with(s))
        || word
            .strip_suffix("ips")
            .or_else(|| word.strip_suffix("ip"))
            .is_some_and(|owner| OWNERS.contains(&owner))
}

/// `ipAddress` and `ip-address` as `ip_address`, `IP` as `ip`, `clientIPs` as `client_ips`,
/// `clientIPv6` as `client_ipv6`.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut snake = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1);
        // A word starts at an upper-case letter after a lower-case one or a digit, and at the
        // last capital of a run followed by a lower-case letter (`HTTPAgent`: `http_agent`),
        // unless that letter is a plural `s` (`IPs`) or starts a version (`IPv6`: `ipv6`).
        let after_lower = prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
        let version = next == Some(&'v') && chars.get(i + 2).is_some_and(char::is_ascii_digit);
        let run_end = prev.is_some_and(|p| p.is_ascii_uppercase())
            && next.is_some_and(|n| n.is_ascii_lowercase() && *n != 's')
            && !version;
        if c.is_ascii_uppercase() && (after_lower || run_end) {
            snake.push('_');
        }
        snake.push(match c {
            '-' | '.' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        });
    }
    snake
}
