/*!
Where opt-outs live, behind one [`OptOutBackend`] trait the admin API, the metrics and the
request path use:

- [`store`]: the embedded durable store (journal + snapshots in one directory), the default;
  one gateway process owns it. [`embedded`] is its thin adapter to the trait.
- [`postgres`]: a PostgreSQL database shared by several gateway replicas. Each replica keeps
  its own in-memory copy, kept current by `LISTEN/NOTIFY` plus a periodic catch-up on a change
  log, so lookups stay as fast as with the embedded store.

Either way the request path asks an in-memory `gateway_core::optout::OptOutSet`; only admin
writes (and reads) go to the backend.
*/

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::optout::{OptOutSource, Scope};

pub mod embedded;
pub mod postgres;
pub mod store;

pub use store::{ImportSummary, OptOutStore};

/// Why an admin read or write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The database cannot be reached (or did not confirm in time): 503, nothing acknowledged.
    #[error("the opt-out database is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// The embedded store's files cannot be written (disk full, read-only, permissions): 503,
    /// nothing recorded.
    #[error("the opt-out store cannot be written, nothing was recorded (retry): {0:#}")]
    Unwritable(anyhow::Error),
    /// Anything else: 500.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// How fresh a replica's copy is, for `/readyz` and the staleness gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The first complete load has not finished: routes that honour opt-outs answer 503.
    NotLoaded,
    /// Current (the embedded store always is; a PostgreSQL replica that reached the database
    /// within its last catch-up interval).
    Current { staleness: Duration },
    /// A PostgreSQL replica that has not reached the database for `staleness`; past
    /// `max_staleness` routes that honour opt-outs answer 503.
    Stale {
        staleness: Duration,
        max_staleness: Duration,
    },
}

impl Freshness {
    /// Whether routes that honour opt-outs may use the copy.
    pub fn usable(self) -> bool {
        match self {
            Freshness::NotLoaded => false,
            Freshness::Current { .. } => true,
            Freshness::Stale {
                staleness,
                max_staleness,
            } => staleness <= max_staleness,
        }
    }
}

/// One place opt-outs are kept. Reads on the request path go to [`OptOutBackend::source`]
/// (in memory); the admin API's reads and writes go through the async methods.
#[async_trait]
pub trait OptOutBackend: Send + Sync {
    /// The in-memory set the request path asks, or `None` when it may not be used (not yet
    /// loaded, or stale past the bound): routes that honour opt-outs then answer 503.
    fn source(self: Arc<Self>) -> Option<Arc<dyn OptOutSource>>;

    fn freshness(&self) -> Freshness;

    /// Customers per scope in the in-memory copy (for `partner_gateway_optouts{scope}`).
    fn count_by_scope(&self) -> Vec<(Scope, u64)>;

    /// The customer's scopes (sorted), or `None` when it has none.
    async fn get(&self, id: &str) -> Result<Option<Vec<Scope>>, BackendError>;

    /// Adds scopes; returns every scope the customer now has, once durable (committed).
    async fn put(&self, id: &str, scopes: &[Scope]) -> Result<Vec<Scope>, BackendError>;

    /// Removes all (`None`) or some scopes, once durable. `None` when the customer had none,
    /// else the scopes left (sorted, maybe empty).
    async fn delete(
        &self,
        id: &str,
        scopes: Option<&[Scope]>,
    ) -> Result<Option<Vec<Scope>>, BackendError>;
}
