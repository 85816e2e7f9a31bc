/*!
The pure core of partner-gateway: everything that decides what may leave OhSoft,
with no I/O, no clock reads it was not handed, and no pingora types.

- [`policy`]: the policy files' wire format, their validation, and the validated model.
- [`diff`]: what a policy change starts or stops disclosing, per partner and route.
- [`drift`]: fields callers send that no policy path names, as paths (never values).
- [`filter`]: the streaming JSON filter that turns a caller's body into what a partner may see.
- [`optout`]: the in-memory opt-out set and the scopes a route honours.
- [`jose`]: key material, algorithms and clock leeway shared by caller tokens and data-use tokens.
- [`tagging`]: the `ohsoft-data-use` header and the signed data-use token.
- [`plan`]: the whole decision for one request: target, filtered body, headers and query.
- [`policytest`]: policy tests (`policy/tests/` YAML files): a request in, the expected body or refusal out.
- [`headers`]: the header rules: never forwarded, partner credential, always allowed, hop-by-hop.
- [`shadow`]: a candidate policy's decision compared with the active one, as field paths.
- [`refusal`]: every reason the gateway refuses a request, with its status and code.

The shell crate (`partner-gateway`) reads files, listens on sockets and talks to partners;
it asks this crate every question whose answer decides what a partner receives.
*/
#![forbid(unsafe_code)]

pub mod callers;
pub mod diff;
pub mod drift;
pub mod filter;
pub mod headers;
pub mod jose;
pub mod ledger;
pub mod optout;
pub mod plan;
pub mod policy;
pub mod policytest;
pub mod refusal;
pub mod shadow;
pub mod tagging;

pub use refusal::{Refusal, RefusalKind};
