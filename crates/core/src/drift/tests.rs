use super::*;
use crate::filter::FieldPath;
use crate::filter::{self, FilterOptions, FilterProgram, FilterSpec};

fn program(allow: &[&str], records: Option<&str>) -> FilterProgram {
    let spec = FilterSpec {
        allow: allow.iter().map(|p| FieldPath::parse(p).unwrap()).collect(),
        transforms: Vec::new(),
        records: records.map(|r| FieldPath::parse(r).unwrap()),
        subject: records.map(|_| "customer_id".to_string()),
        ..FilterSpec::default()
    };
    FilterProgram::compile(&spec).unwrap()
}

/// A drift path with its count and shape names.
type Listed = (String, u64, Vec<&'static str>);

fn unknown(program: &FilterProgram, body: &str) -> (u64, Vec<Listed>) {
    let options = FilterOptions {
        max_depth: 64,
        pseudonymize_key: None,
        optouts: None,
        detail: false,
        subjects: false,
    };
    let report = filter::filter(program, body.as_bytes(), &options)
        .unwrap()
        .report;
    let fields = report
        .unknown
        .iter()
        .map(|f| (f.path.clone(), f.count, f.shapes.names()))
        .collect();
    (report.unknown_fields, fields)
}

#[test]
fn unknown_members_are_listed_once_per_path_with_indexes_collapsed() {
    let p = program(
        &[
            "order_id",
            "shipments[*].customer_id",
            "shipments[*].address.**",
        ],
        Some("shipments[*]"),
    );
    let body = r#"{"order_id":"o-1","channel":"web",
        "shipments":[
          {"customer_id":"c-1","phone":"+351 912","address":{"city":"Porto","extra":1},"meta":{"a":1}},
          {"customer_id":"c-2","phone":"+351 913","tags":["x"]}
        ]}"#;
    let (count, fields) = unknown(&p, body);
    assert_eq!(count, 5);
    assert_eq!(
        fields,
        [
            ("channel".to_string(), 1, vec!["scalar"]),
            ("shipments[*].phone".to_string(), 2, vec!["scalar"]),
            ("shipments[*].meta".to_string(), 1, vec!["object"]),
            ("shipments[*].tags".to_string(), 1, vec!["array"]),
        ]
    );
}

#[test]
fn drift_paths_never_hold_values_nor_data_used_as_names() {
    let p = program(&["order_id"], None);
    let body = r#"{"order_id":"o-1",
        "secret_note":"Ana Lima lives at Rua das Flores 12",
        "by_customer":{"c-104233":{"email":"ana@example.com"},"ana@example.com":1,"4111111111111111":2,"Ana Lima":3,"stra\u00dfe":4},
        "c-104233":"x","a.b":1,"":2}"#;
    let (_, fields) = unknown(&p, body);
    let paths: Vec<&str> = fields.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(paths, ["secret_note", "by_customer", "*"]);
    for value in [
        "Ana", "Lima", "Rua", "104233", "ana@", "example", "4111", "stra", "o-1",
    ] {
        assert!(
            paths.iter().all(|p| !p.contains(value)),
            "{value} leaked into {paths:?}"
        );
    }
    // Beneath a kept object, data-like names collapse into one `*` path.
    let p = program(&["by_customer.known"], None);
    let (count, fields) = unknown(&p, body);
    let by_customer: Vec<_> = fields
        .iter()
        .filter(|f| f.0.starts_with("by_customer"))
        .collect();
    assert_eq!(
        by_customer,
        [&("by_customer.*".to_string(), 5, vec!["scalar", "object"])]
    );
    assert_eq!(count, 10);
}

#[test]
fn field_names_are_told_from_data() {
    for name in [
        "email",
        "address_line2",
        "x-request-id",
        "_id",
        "shipToName",
        "sha256",
        "x509",
    ] {
        assert!(is_field_name(name.as_bytes()), "{name}");
    }
    for name in [
        "",
        "c-104233",
        "c-1001",
        "v2024",
        "2024-08-15",
        "ana@example.com",
        "Ana Lima",
        "a.b",
        "a[0]",
        "*",
        "3f2a9c1e-7b4d",
        "straße",
        "+351912345678",
    ] {
        assert!(!is_field_name(name.as_bytes()), "{name}");
    }
    assert!(!is_field_name("a".repeat(65).as_bytes()));
}

#[test]
fn a_request_lists_a_bounded_number_of_paths() {
    let p = program(&["keep"], None);
    let members: Vec<String> = (0..300)
        .map(|i| format!("\"f{}\":1", to_letters(i)))
        .collect();
    let body = format!("{{{}}}", members.join(","));
    let (count, fields) = unknown(&p, &body);
    assert_eq!(count, 300);
    assert_eq!(fields.len(), MAX_PATHS_PER_REQUEST);
}

fn to_letters(mut i: usize) -> String {
    let mut s = String::new();
    loop {
        s.push((b'a' + (i % 26) as u8) as char);
        i /= 26;
        if i == 0 {
            return s;
        }
    }
}

#[test]
fn the_table_keeps_counts_and_first_and_last_seen_within_bounds() {
    let field = |path: &str, count| UnknownField {
        path: path.to_string(),
        count,
        shapes: Shapes::of_first_byte(Some(b'"')),
    };
    let mut table = DriftTable::new();
    table.record("acme", "/v1/s", &[field("a", 2), field("b", 1)], 0, 100);
    table.record("acme", "/v1/s", &[field("a", 1)], 3, 160);
    let routes: Vec<_> = table.routes().collect();
    assert_eq!(routes.len(), 1);
    let (partner, route, drift) = routes[0];
    assert_eq!((partner, route), ("acme", "/v1/s"));
    assert_eq!(drift.not_listed, 3);
    let a = &drift.paths["a"];
    assert_eq!((a.count, a.first_seen, a.last_seen), (3, 100, 160));
    assert_eq!(drift.paths["b"].last_seen, 100);

    let many: Vec<UnknownField> = (0..MAX_PATHS_PER_ROUTE + 10)
        .map(|i| field(&format!("f{}", to_letters(i)), 1))
        .collect();
    let mut table = DriftTable::new();
    table.record("acme", "/v1/s", &many, 0, 1);
    let (_, _, drift) = table.routes().next().unwrap();
    assert_eq!(drift.paths.len(), MAX_PATHS_PER_ROUTE);
    assert_eq!(drift.not_listed, 10);
}

#[test]
fn suggestions_pass_scalars_plainly_and_never_open_data_like_names() {
    let scalar = Shapes::of_first_byte(Some(b'1'));
    let object = Shapes::of_first_byte(Some(b'{'));
    assert_eq!(
        suggestion("shipments[*].phone", scalar),
        Suggestion::Allow("shipments[*].phone".into())
    );
    assert_eq!(
        suggestion("shipments[*].meta", object),
        Suggestion::Container
    );
    assert_eq!(
        suggestion("by_customer.*", scalar),
        Suggestion::DataLikeNames
    );
    assert_eq!(suggestion("*", scalar), Suggestion::DataLikeNames);
    for path in [
        "contacts[*].ip_address",
        "contacts[*].ipAddress",
        "contacts[*].IP",
        "client_ip",
        "contacts[*].user_agent",
        "contacts[*].UserAgent",
        "shipments[*].client.referer",
        "session.cookie",
        "meta.ipv6",
        "origin-domain",
        "clientip",
        "clientIPs",
        "srcip",
        "ips",
        "remoteip",
        "ip4",
        "device.ipv4address",
        "ip_addresses",
        "ipList",
        "device.lan_ip",
        "device.mac_addr",
        "xff",
        "forwardedFor",
        "peer_address",
        "origin",
        "uastring",
        "http_agent",
        "HTTPAgent",
        "accept_language",
        "screen_resolution",
        "timezone",
        "time_zone",
        "userTimeZone",
        "websiteUrl",
        "landing_page_url",
        "geoip_city",
        "hostname",
        "macaddress",
        "remoteaddr",
        "peeraddr",
        "clientaddr",
        "inetAddress",
        "ipcountry",
        "ipinfo",
        "requestip",
        "loginip",
        "cfconnectingip",
        "image_urls",
        "redirectUris",
        "fqdn",
        "sni",
        "website",
        "href",
        "isp",
        "asn",
        "session_id",
        "viewport_width",
        "jsessionid",
        "idfa",
        "gaid",
        "advertising_id",
        "IPv4",
        "IPv6",
        "IPv6Address",
        "clientIPv6",
        "client_address",
        "client_addr",
        "src_addr",
        "cidr",
        "netblock",
        "navigator_platform",
        "request_headers",
        "headers",
        "visitor_id",
        "gclid",
        "utm_source",
        "ip1",
        "iP",
        "wan_addr",
        "lan_address",
        "public_address",
        "dns_name",
        "tld",
        "lat",
        "lng",
        "gps",
        "coordinates",
        "geohash",
        "msclkid",
        "ttclid",
        "dclid",
        "fbp",
        "_ga",
        "ga_client_id",
        "click_id",
        "anonymous_id",
        "distinct_id",
        "webgl_vendor",
        "canvas_hash",
        "plugins",
        "fonts",
        "color_depth",
        "do_not_track",
        "locale",
        "web_address",
        "hardware_address",
        "client_port",
        "netmask",
        "nameserver",
        "latlng",
        "utm_id",
        "idfv",
        "gbraid",
        "homepage",
        "latitude",
        "longitude",
        "geo",
        "fingerPrint",
        "finger_print",
        "myip",
        "natip",
        "custip",
        "netaddr",
        "inet",
        "hwaddr",
        "client_hints",
        "sec_ch_ua",
        "gpc",
        "dpr",
        "acceptLang",
        "accept_lang",
        "lang",
        "origins",
        "vhost",
        "servername",
        "server_name",
        "smtpServer",
        "mx",
        "deviceId",
        "device_id",
        "imei",
        "ja3",
        "androidId",
        "adId",
        "deviceMemory",
        "devicePixelRatio",
        "client.address",
        "peer.port",
        "hardwareConcurrency",
        "maxTouchPoints",
        "webdriver",
        "device.memory",
    ] {
        assert_eq!(
            suggestion(path, scalar),
            Suggestion::NetworkOrBrowserData,
            "{path}"
        );
    }
    for path in [
        "shipments[*].zip",
        "description",
        "shipping",
        "tip",
        "tips",
        "chips",
        "equipment",
        "membership",
        "order_id",
        "shipments[*].items[*].sku",
        "[*].sku",
        "relationship",
        "internship",
        "paid",
        "void",
        "customer_name",
        "account_type",
        "membership_level",
        "uploadId",
        "load_id",
        "shipping.address",
        "customer.address",
        "customer.name",
        "order.id",
        "address.street",
        "email",
        "phone",
        "Version",
        "HTTPVersion",
        "shipping_address",
        "ship_address",
        "platform",
        "os_name",
        "tracking_number",
        "trackingNumber",
        "tracking_id",
        "shipping_tracking",
        "header",
        "header_text",
        "invoice_header",
        "visitor_count",
        "utm_zone",
        "customer_address",
        "destination_address",
        "billing_address",
        "geometry",
        "resolution",
        "version",
        "private_address",
        "local_address",
        "port_of_loading",
    ] {
        assert_eq!(
            suggestion(path, scalar),
            Suggestion::Allow(path.into()),
            "{path}"
        );
    }
}

#[test]
fn names_of_a_customers_identifier_are_never_suggested() {
    let scalar = Shapes::of_first_byte(Some(b'1'));
    for path in [
        "customer_id",
        "contacts[*].customerId",
        "CustomerID",
        "customerid",
        "cust_no",
        "userId",
        "user_uuid",
        "account_number",
        "acctNum",
        "member_ref",
        "subscriber_id",
        "cardholder_id",
        "id_customer",
        "idCustomer",
        "customerUid",
        "customer._id",
        "customer.pk",
        "customer.external_id",
        "people[*].id",
        "payer.id",
        "guest.id",
        "crmId",
        "customerCode",
        "customerExternalId",
        "customer_id_hash",
        "customerId2",
        "customerIdList",
        "shopperReference",
        "loyaltyId",
        "customer.idNumber",
        "customer.number_id",
        "customer.identity",
        "lead.id",
        "prospect.id",
        "usr_id",
        "customer.id",
        "customers[*].id",
        "user.uuid",
        "uid",
        "cid",
        "customerKey",
        "customerIdentifier",
        "contacts[*].member_no",
    ] {
        assert_eq!(suggestion(path, scalar), Suggestion::CustomerId, "{path}");
    }
}

/// A path the gateway's table cannot hold (from an answer that did not come from a gateway):
/// no line, whatever its name.
#[test]
fn paths_no_gateway_writes_are_never_suggested() {
    let scalar = Shapes::of_first_byte(Some(b'1'));
    for path in [
        "contacts[*].**",
        "contacts.**",
        "**",
        "contacts[*]['x']",
        "a[0].b",
        "a[*]x",
        "contacts[*].\u{131}p",
        "a..b",
        "a.",
        "",
        "x[*].[*]",
        "contacts[*].c-1001x2026",
    ] {
        assert_eq!(
            suggestion(path, scalar),
            Suggestion::NotADriftPath,
            "{path}"
        );
    }
    assert_eq!(
        suggestion("[*][*].sku", scalar),
        Suggestion::Allow("[*][*].sku".into())
    );
}

#[test]
fn a_member_the_policy_removes_by_name_is_not_drift() {
    let spec = FilterSpec {
        allow: vec![FieldPath::parse("order_id").unwrap()],
        removes: vec![FieldPath::parse("email").unwrap()],
        ..FilterSpec::default()
    };
    let p = FilterProgram::compile(&spec).unwrap();
    let (count, fields) = unknown(&p, r#"{"order_id":"o-1","email":"a","phone":"b"}"#);
    assert_eq!(count, 1);
    assert_eq!(fields, [("phone".to_string(), 1, vec!["scalar"])]);
}

#[test]
fn the_table_lists_routes_sorted_by_partner_then_route() {
    let field = |path: &str| UnknownField {
        path: path.to_string(),
        count: 1,
        shapes: Shapes::of_first_byte(Some(b'1')),
    };
    let partners = ["b", "a-b", "ab", "a", "a.b", "Z"];
    let routes = ["/v1/s/{id}", "/v1/s", "/v1", "/v2/s", "/V1/s"];
    let mut table = DriftTable::new();
    let mut expected = Vec::new();
    for (i, partner) in partners.iter().enumerate() {
        for (j, route) in routes.iter().enumerate().skip(i % 2) {
            table.record(partner, route, &[field(&format!("f{j}"))], i as u64, 7);
            expected.push((partner.to_string(), route.to_string(), j, i as u64));
        }
        // Nothing unknown: no entry.
        table.record(partner, "/quiet", &[], 0, 7);
    }
    expected.sort();
    let listed: Vec<_> = table
        .routes()
        .map(|(p, r, d)| {
            let path = d.paths.keys().next().unwrap();
            let j: usize = path[1..].parse().unwrap();
            (p.to_string(), r.to_string(), j, d.not_listed)
        })
        .collect();
    assert_eq!(listed, expected);
}
