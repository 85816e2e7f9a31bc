/*!
`gateway.yaml`'s `optouts:` section: the embedded store's `path`, or a PostgreSQL database
shared by several replicas (`postgres: { url_env, table, max_staleness_s }`).
*/
use std::path::Path;
use std::time::Duration;

use super::{env_secret, is_env_name, line, non_empty, resolve, Diags, Env};
use crate::policy::file::{looks_like_a_secret, OptOutsFile};
use crate::policy::model::{OptOutStoreConfig, PostgresOptOuts};

/// What can be wrong in `optouts:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum InvalidOptOuts {
    #[error("optouts needs exactly one of `path` (the embedded store) and `postgres` (a shared database)")]
    Backend,
    #[error("invalid optouts.postgres.table {0:?} (expected lowercase letters, digits and `_`, starting with a letter or `_`, at most 48 bytes)")]
    TableName(String),
    #[error("invalid optouts.postgres.table: it looks like a database URL or credential, which belongs in the environment variable `url_env` names (the value is not shown)")]
    SecretTableName,
    #[error("optouts.postgres.table {0:?} is an SQL reserved word or a PostgreSQL system name (`pg_…`): choose another name")]
    ReservedTable(String),
    #[error("optouts.postgres.max_staleness_s must be greater than 0")]
    ZeroStaleness,
    #[error("optouts.postgres.max_staleness_s {0} is over {max}: replicas that long out of touch with the database would still forward customers who opted out meanwhile", max = PostgresOptOuts::MAX_STALENESS_S)]
    LongStaleness(u64),
}

/// Never both, never neither. In serve mode the URL variable must be set (its value stays out
/// of the policy).
pub(super) fn validate_optouts(
    path: &str,
    o: &OptOutsFile,
    at: u64,
    base: &Path,
    env: Option<&dyn Env>,
    d: &mut Diags,
) -> Option<OptOutStoreConfig> {
    let pg = match (&o.path, &o.postgres) {
        (Some(p), None) => {
            return non_empty(path, p, "optouts.path", d).map(|p| OptOutStoreConfig::Embedded {
                path: resolve(base, &p),
            })
        }
        (None, Some(pg)) => &pg.value,
        _ => {
            d.error(path, at, InvalidOptOuts::Backend);
            return None;
        }
    };
    env_secret(path, &pg.url_env, "optouts.postgres.url_env", env, d);
    let table = match &pg.table {
        None => PostgresOptOuts::DEFAULT_TABLE.to_string(),
        Some(t) if PostgresOptOuts::reserved_word(&t.value) => {
            d.error(
                path,
                line(t),
                InvalidOptOuts::ReservedTable(t.value.clone()),
            );
            return None;
        }
        Some(t) if PostgresOptOuts::valid_table(&t.value) => t.value.clone(),
        Some(t) if looks_like_a_secret(&t.value) => {
            d.error(path, line(t), InvalidOptOuts::SecretTableName);
            return None;
        }
        Some(t) => {
            d.error(path, line(t), InvalidOptOuts::TableName(t.value.clone()));
            return None;
        }
    };
    let max_staleness_s = match &pg.max_staleness_s {
        None => PostgresOptOuts::DEFAULT_MAX_STALENESS_S,
        Some(v) if v.value == 0 => {
            d.error(path, line(v), InvalidOptOuts::ZeroStaleness);
            return None;
        }
        Some(v) if v.value > PostgresOptOuts::MAX_STALENESS_S => {
            d.error(path, line(v), InvalidOptOuts::LongStaleness(v.value));
            return None;
        }
        Some(v) => v.value,
    };
    if !is_env_name(&pg.url_env.value) {
        return None;
    }
    Some(OptOutStoreConfig::Postgres(PostgresOptOuts {
        url_env: pg.url_env.value.clone(),
        table,
        max_staleness: Duration::from_secs(max_staleness_s),
    }))
}
