//! The embedded [`OptOutStore`] as an [`OptOutBackend`]: always current, writes are durable
//! once its journal is synced.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_core::optout::{OptOutSource, Scope};

use super::{BackendError, Freshness, OptOutBackend, OptOutStore};

#[async_trait]
impl OptOutBackend for OptOutStore {
    fn source(self: Arc<Self>) -> Option<Arc<dyn OptOutSource>> {
        Some(self.in_memory())
    }

    fn freshness(&self) -> Freshness {
        Freshness::Current {
            staleness: Duration::ZERO,
        }
    }

    fn count_by_scope(&self) -> Vec<(Scope, u64)> {
        OptOutStore::count_by_scope(self).unwrap_or_default()
    }

    async fn get(&self, id: &str) -> Result<Option<Vec<Scope>>, BackendError> {
        OptOutStore::get(self, id).map_err(BackendError::Failed)
    }

    async fn put(&self, id: &str, scopes: &[Scope]) -> Result<Vec<Scope>, BackendError> {
        OptOutStore::put(self, id, scopes).map_err(BackendError::Failed)
    }

    async fn delete(
        &self,
        id: &str,
        scopes: Option<&[Scope]>,
    ) -> Result<Option<Vec<Scope>>, BackendError> {
        OptOutStore::delete(self, id, scopes).map_err(BackendError::Failed)
    }
}
