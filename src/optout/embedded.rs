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
        OptOutStore::put(self, id, scopes).map_err(change_failed)
    }

    async fn delete(
        &self,
        id: &str,
        scopes: Option<&[Scope]>,
    ) -> Result<Option<Vec<Scope>>, BackendError> {
        OptOutStore::delete(self, id, scopes).map_err(change_failed)
    }
}

/// A change the store could not write to its files (disk full, read-only, permissions) is
/// [`BackendError::Unwritable`]: the store applies a change only once it is in the journal, so
/// nothing was recorded and the caller may retry. Anything else is a failure.
fn change_failed(e: anyhow::Error) -> BackendError {
    if e.chain().any(|cause| cause.is::<std::io::Error>()) {
        BackendError::Unwritable(e)
    } else {
        BackendError::Failed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_that_cannot_be_written_is_retryable_and_nothing_else_is() {
        let full = std::io::Error::from_raw_os_error(28);
        let e = anyhow::Error::new(full).context("cannot write to data/optouts/journal");
        let unwritable = change_failed(e);
        assert!(matches!(unwritable, BackendError::Unwritable(_)));
        assert!(
            unwritable.to_string().contains("nothing was recorded"),
            "{unwritable}"
        );
        let e = anyhow::anyhow!("no scopes to add");
        assert!(matches!(change_failed(e), BackendError::Failed(_)));
    }
}
