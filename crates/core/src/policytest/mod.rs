/*!
Policy tests: requests and what the partner must receive, kept next to the policy in
`policy/tests/<name>.yaml` and owned by the people who own the policy (the way `opa test` and
`vector test` keep tests beside their configuration).

A test file is a YAML list of cases. Each names a request (partner, method, path, caller,
headers, body inline or from a file, the opt-outs in force) and what must come of it: the
exact body the partner receives (and, optionally, headers and the forwarded path), or the
refusal (status and code). [`run_case`] decides the request with the same core call as the
proxy and `explain` ([`crate::plan::plan`]) and reports a failure with its line and a
readable diff.

- `file`: the wire format, with the line of every value a failure may point at.
- `run`: deciding one case and comparing the outcome with its expectation.
*/
mod file;
mod run;

#[cfg(test)]
mod tests;

pub use file::{parse, Body, Case, Expect, ExpectedBody, ParseError};
pub use run::{
    carries_more, decide_case, pretty_json, run_case, test_pseudonymize_key, unified_diff, Failure,
    Forwarded,
};
