/*!
partner-gateway's shell: everything that touches files, sockets and the clock, around the pure
core in `gateway_core`.

- [`proxy`]: the pingora proxy — decide, then forward.
- [`admin`]: metrics, health, JWKS and the opt-out API.
- [`gateway`]: shared runtime state and policy swaps.
- [`conn_limits`]: per-connection limits: head deadline and size, connection count.
- [`drift`]: unknown fields seen per route (`/drift`).
- [`shadow`]: the candidate policy decided beside the active one (`/shadow`).
- [`reload`]: watch the policy directory; validate, then swap.
- [`loader`]: policy directory → validated policy.
- [`metrics`]: every metric, registered once.
- [`logs`]: JSON log lines, and what may never reach them.
- [`optout`]: the durable opt-out store.
- [`cli`]: one file per subcommand.
- [`tls`]: certificates and keys for both legs, and their reloads.
- [`http1`]: a minimal HTTP/1.1 client for the demo and tests.
- [`ledger`]: the disclosure ledger writer.
- [`memory`]: when memory is given back to the system after a burst.
- [`signing`]: ES256 data-use signatures through ring.
*/
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod conn_limits;
pub mod drift;
pub mod gateway;
pub mod http1;
pub mod ledger;
pub mod loader;
pub mod logs;
pub mod memory;
pub mod metrics;
pub mod optout;
pub mod proxy;
pub mod reload;
pub mod shadow;
pub mod shutdown;
pub mod signing;
pub mod tls;

/// A mutex's guard, poisoned or not: for state that stays consistent when a holder panics
/// (each update is a single assignment or insertion).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
