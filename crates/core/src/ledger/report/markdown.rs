//! The report as Markdown, for people.
use std::fmt::Write;

use super::ProcessingReport;

/// Markdown: a summary, then one section per recipient.
pub fn markdown(r: &ProcessingReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Records of processing: disclosures to recipients\n");
    let _ = writeln!(
        s,
        "Period: {} to {} (records from {} to {}); policy version {}.\n",
        r.since.as_deref().unwrap_or("the start of the ledger"),
        r.until.as_deref().unwrap_or("now"),
        r.first_record.as_deref().unwrap_or("-"),
        r.last_record.as_deref().unwrap_or("-"),
        r.policy_version
    );
    if r.streams_without_outcome > 0 {
        let _ = writeln!(
            s,
            "**{}**\n",
            super::incomplete_streams(r.streams_without_outcome)
        );
    }
    let _ = writeln!(
        s,
        "| Recipient | Kind | Purpose | Use | Requests | Records forwarded | Records dropped (opt-outs) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---:|---:|---:|");
    for p in &r.recipients {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&p.partner),
            p.kind,
            cell(&p.purpose),
            p.use_,
            p.requests,
            p.records_forwarded,
            p.records_dropped
        );
    }
    for p in &r.recipients {
        recipient(&mut s, p);
    }
    s
}

/// One recipient's section: what it is, the legal bases and categories, the volumes per route.
fn recipient(s: &mut String, p: &super::Recipient) {
    let _ = writeln!(s, "\n## {}\n", cell(&p.partner));
    let _ = writeln!(
        s,
        "- Kind: {}; purpose: {}; use: {}",
        p.kind,
        cell(&p.purpose),
        p.use_
    );
    if !p.in_policy {
        let _ = writeln!(
            s,
            "- **Not in the current policy** (seen in the ledger only)"
        );
    }
    if let Some(h) = &p.legal_basis_header {
        let _ = writeln!(s, "- Legal basis required on every request (header `{h}`)");
    }
    if !p.legal_bases.is_empty() {
        let cited: Vec<String> = p.legal_bases.iter().map(|b| code(b)).collect();
        let _ = writeln!(s, "- Legal bases cited: {}", cited.join(", "));
    }
    let _ = writeln!(s, "- Declared categories: {}", list(&p.declared_categories));
    let disclosed: Vec<String> = p
        .disclosed_categories
        .iter()
        .map(|c| format!("{} ({} requests)", c.category, c.requests))
        .collect();
    let _ = writeln!(s, "- Disclosed categories: {}", list(&disclosed));
    if !p.declared_unused.is_empty() {
        let _ = writeln!(
            s,
            "- Declared but not disclosed: {}",
            list(&p.declared_unused)
        );
    }
    if !p.disclosed_undeclared.is_empty() {
        let _ = writeln!(
            s,
            "- **Disclosed but not declared**: {}",
            list(&p.disclosed_undeclared)
        );
    }
    let _ = writeln!(
        s,
        "- Requests: {}; records forwarded: {}; records dropped for opt-outs: {}",
        p.requests, p.records_forwarded, p.records_dropped
    );
    for route in &p.routes {
        let _ = writeln!(
            s,
            "  - `{}`: {} requests, {} records forwarded, {} dropped for opt-outs",
            route.route, route.requests, route.records_forwarded, route.records_dropped
        );
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.iter().map(|i| cell(i)).collect::<Vec<_>>().join(", ")
    }
}

/// Caller input (a legal-basis reference) as a code span: the one place where Markdown makes
/// nothing of its text, neither HTML, links, images, emphasis nor the bare-URL and e-mail
/// autolinks GitHub's renderer finds even behind backslash escapes. The fence is one backtick
/// longer than the longest run inside.
fn code(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') || text.is_empty() {
        " "
    } else {
        ""
    };
    // Written in list items, where `|` is text (a backslash inside a code span would be shown).
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// Policy text (partner ids, purposes, categories) safe inside a Markdown table cell, and inert
/// where Markdown passes HTML through or makes links and images.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' | '[' | ']' | '`' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
