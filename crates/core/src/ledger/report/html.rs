//! The report as one self-contained HTML page: no external assets and no script. A data map
//! (inline SVG) comes first — data categories on the left, recipients on the right, one band
//! per category a recipient received, as thick as the number of requests that carried it —
//! then the tables.
use std::fmt::Write;

use super::ProcessingReport;

const WIDTH: f64 = 900.0;
const ROW: f64 = 34.0;
const TOP: f64 = 30.0;
const LEFT_X: f64 = 260.0;
const RIGHT_X: f64 = 640.0;
const MAX_BAND: f64 = 22.0;
const MIN_BAND: f64 = 1.5;

/// The page.
pub fn html(r: &ProcessingReport) -> String {
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<title>Records of processing: disclosures to recipients</title>\n<style>\n");
    s.push_str("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}.num{text-align:right}.flag{color:#b00;font-weight:bold}svg text{font-size:13px}\n");
    s.push_str(
        "</style>\n</head>\n<body>\n<h1>Records of processing: disclosures to recipients</h1>\n",
    );
    let _ = writeln!(
        s,
        "<p>Period: {} to {} (records from {} to {}); policy version {}. {} requests, {} records forwarded, {} records dropped for opt-outs.</p>",
        esc(r.since.as_deref().unwrap_or("the start of the ledger")),
        esc(r.until.as_deref().unwrap_or("now")),
        esc(r.first_record.as_deref().unwrap_or("-")),
        esc(r.last_record.as_deref().unwrap_or("-")),
        esc(&r.policy_version),
        r.requests,
        r.records_forwarded,
        r.records_dropped
    );
    if r.streams_without_outcome > 0 {
        let note = super::incomplete_streams(r.streams_without_outcome);
        let _ = writeln!(s, "<p class=\"flag\">{}</p>", esc(&note));
    }
    s.push_str("<h2>Data map</h2>\n");
    s.push_str(&data_map(r));
    tables(r, &mut s);
    s.push_str("</body>\n</html>\n");
    s
}

/// The SVG: categories (left) → recipients (right). Every category of the report is on it:
/// those declared and not disclosed in the period stand without a band.
pub fn data_map(r: &ProcessingReport) -> String {
    let mut categories: Vec<&str> = r
        .recipients
        .iter()
        .flat_map(|p| {
            let disclosed = p.disclosed_categories.iter().map(|c| c.category.as_str());
            disclosed.chain(p.declared_categories.iter().map(String::as_str))
        })
        .collect();
    categories.sort_unstable();
    categories.dedup();
    let partners: Vec<&str> = r.recipients.iter().map(|p| p.partner.as_str()).collect();
    let rows = categories.len().max(partners.len()).max(1) as f64;
    let height = TOP * 2.0 + rows * ROW;
    let max = r
        .recipients
        .iter()
        .flat_map(|p| p.disclosed_categories.iter().map(|c| c.requests))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let y = |i: usize, n: usize| TOP + (rows - n as f64) * ROW / 2.0 + i as f64 * ROW + ROW / 2.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"Data map: data categories and the recipients that received them\">"
    );
    let _ = writeln!(s, "<text x=\"{LEFT_X}\" y=\"16\" text-anchor=\"end\" font-weight=\"bold\">Data categories</text><text x=\"{RIGHT_X}\" y=\"16\" font-weight=\"bold\">Recipients</text>");
    for (pi, p) in r.recipients.iter().enumerate() {
        for c in &p.disclosed_categories {
            let Some(ci) = categories.iter().position(|k| *k == c.category) else {
                continue;
            };
            let (y1, y2) = (y(ci, categories.len()), y(pi, partners.len()));
            let width = (c.requests as f64 / max * MAX_BAND).max(MIN_BAND);
            let mid = (LEFT_X + RIGHT_X) / 2.0;
            let _ = writeln!(
                s,
                "<path class=\"band\" data-category=\"{cat}\" data-partner=\"{part}\" d=\"M {x1} {y1:.1} C {mid} {y1:.1}, {mid} {y2:.1}, {x2} {y2:.1}\" fill=\"none\" stroke=\"{color}\" stroke-opacity=\"0.55\" stroke-width=\"{width:.1}\"><title>{cat} → {part}: {n} request{plural}</title></path>",
                cat = esc(&c.category),
                part = esc(&p.partner),
                x1 = LEFT_X + 6.0,
                x2 = RIGHT_X - 6.0,
                color = color(ci),
                n = c.requests,
                plural = if c.requests == 1 { "" } else { "s" }
            );
        }
    }
    for (i, c) in categories.iter().enumerate() {
        let yy = y(i, categories.len());
        let _ = writeln!(
            s,
            "<circle cx=\"{LEFT_X}\" cy=\"{yy:.1}\" r=\"5\" fill=\"{}\"/><text class=\"category\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            color(i),
            LEFT_X - 10.0,
            yy + 4.0,
            esc(c)
        );
    }
    for (i, p) in r.recipients.iter().enumerate() {
        let yy = y(i, partners.len());
        let _ = writeln!(
            s,
            "<circle cx=\"{RIGHT_X}\" cy=\"{yy:.1}\" r=\"5\" fill=\"#555\"/><text class=\"partner\" x=\"{}\" y=\"{:.1}\"><tspan class=\"name\">{}</tspan> ({}, {} request{})</text>",
            RIGHT_X + 10.0,
            yy + 4.0,
            esc(&p.partner),
            esc(&p.kind),
            p.requests,
            if p.requests == 1 { "" } else { "s" }
        );
    }
    s.push_str("</svg>\n");
    s
}

fn tables(r: &ProcessingReport, s: &mut String) {
    s.push_str("<h2>Recipients</h2>\n<table>\n<tr><th>Recipient</th><th>Kind</th><th>Purpose</th><th>Use</th><th>Legal basis</th><th>Requests</th><th>Records forwarded</th><th>Records dropped (opt-outs)</th></tr>\n");
    for p in &r.recipients {
        let basis = match (&p.legal_basis_header, p.legal_bases.is_empty()) {
            (None, true) => "-".to_string(),
            (header, _) => {
                let mut text = header
                    .as_ref()
                    .map(|h| format!("required ({h})"))
                    .unwrap_or_default();
                if !p.legal_bases.is_empty() {
                    text.push_str(&format!(" cited: {}", p.legal_bases.join(", ")));
                }
                text
            }
        };
        let gone = if p.in_policy {
            ""
        } else {
            " <span class=\"flag\">(not in the current policy: seen in the ledger only)</span>"
        };
        let _ = writeln!(
            s,
            "<tr><td>{}{gone}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&p.partner), esc(&p.kind), esc(&p.purpose), esc(&p.use_), esc(basis.trim()),
            p.requests, p.records_forwarded, p.records_dropped
        );
    }
    s.push_str("</table>\n<h2>Data categories per recipient</h2>\n<table>\n<tr><th>Recipient</th><th>Declared</th><th>Disclosed (requests)</th><th>Declared, not disclosed</th><th>Disclosed, not declared</th></tr>\n");
    for p in &r.recipients {
        let disclosed: Vec<String> = p
            .disclosed_categories
            .iter()
            .map(|c| format!("{} ({})", c.category, c.requests))
            .collect();
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"flag\">{}</td></tr>",
            esc(&p.partner),
            esc(&p.declared_categories.join(", ")),
            esc(&disclosed.join(", ")),
            esc(&p.declared_unused.join(", ")),
            esc(&p.disclosed_undeclared.join(", "))
        );
    }
    s.push_str("</table>\n");
    routes(r, s);
}

/// Requests and records per route of each recipient.
fn routes(r: &ProcessingReport, s: &mut String) {
    s.push_str("<h2>Routes</h2>\n<table>\n<tr><th>Recipient</th><th>Route</th><th>Requests</th><th>Records forwarded</th><th>Records dropped (opt-outs)</th></tr>\n");
    for p in &r.recipients {
        for route in &p.routes {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&p.partner),
                esc(&route.route),
                route.requests,
                route.records_forwarded,
                route.records_dropped
            );
        }
    }
    s.push_str("</table>\n");
}

fn color(i: usize) -> &'static str {
    const PALETTE: [&str; 8] = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    ];
    PALETTE[i % PALETTE.len()]
}

/// Text safe in HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
