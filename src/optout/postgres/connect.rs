//! Connecting to the opt-out database: the URL (with `sslmode` and an optional
//! `sslrootcert`), rustls for TLS, the writers' pool, and the table names.
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use gateway_core::policy::PostgresOptOuts;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long connecting may take before the database counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Writers' connections per replica.
const POOL_SIZE: usize = 8;

/// A parsed connection URL and how to secure it.
#[derive(Clone)]
pub struct Target {
    pub config: Config,
    tls: Option<MakeRustlsConnect>,
}

/// The table names one `optouts.postgres` section uses.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Current opt-outs: one row per (customer, scope).
    pub optouts: String,
    /// The change log; also the `LISTEN` channel.
    pub changes: String,
    /// One row holding the last change id (its row lock orders writers).
    pub seq: String,
}

impl Tables {
    pub fn new(table: &str) -> Tables {
        debug_assert!(PostgresOptOuts::valid_table(table));
        Tables {
            optouts: table.to_string(),
            changes: format!("{table}_changes"),
            seq: format!("{table}_seq"),
        }
    }
}

impl Target {
    /// Reads the URL from `config.url_env`.
    pub fn from_env(config: &PostgresOptOuts, application: &str) -> Result<Target> {
        let url = std::env::var(&config.url_env).map_err(|_| {
            anyhow!(
                "{} (optouts.postgres.url_env) is not set",
                gateway_core::policy::env_variable_unquoted(&config.url_env)
            )
        })?;
        Target::parse(&url, application).with_context(|| {
            let variable = gateway_core::policy::env_variable_unquoted(&config.url_env);
            format!("the URL in {variable} is not usable")
        })
    }

    /// `postgres://` URL or key=value string. Beyond what tokio-postgres reads, `sslrootcert=FILE`
    /// (PEM roots to trust instead of the system's) and libpq's `sslmode=verify-ca|verify-full`
    /// (both mean `require`: rustls always verifies the server's certificate and name).
    /// Never put the URL itself into an error: it may hold a password.
    pub fn parse(url: &str, application: &str) -> Result<Target> {
        let (url, root_cert) = take_param(url, "sslrootcert");
        let url = url
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        let mut config: Config = url.parse().map_err(url_error)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name(application);
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => {
                let config = crate::tls::client_config(root_cert.as_deref())
                    .context("TLS to the opt-out database")?;
                Some(MakeRustlsConnect::new(config))
            }
        };
        Ok(Target { config, tls })
    }

    /// The same target under another `application_name` (shown in `pg_stat_activity`).
    pub fn with_application(&self, application: &str) -> Target {
        let mut target = self.clone();
        target.config.application_name(application);
        target
    }

    /// One connection whose driver runs on the current runtime (ended when the client drops).
    pub async fn connect(&self) -> Result<Client> {
        let (client, mut connection) = self.connect_raw().await?;
        tokio::spawn(futures_util::future::poll_fn(move |cx| loop {
            match connection.poll_message(cx) {
                std::task::Poll::Ready(Some(Ok(_))) => continue,
                std::task::Poll::Ready(Some(Err(e))) => {
                    log::debug!("opt-out database connection closed: {e}");
                    return std::task::Poll::Ready(());
                }
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(()),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }));
        Ok(client)
    }

    /// A client and its connection, for a caller that drives the connection itself (`LISTEN`).
    /// Bounded as a whole: the driver's `connect_timeout` covers only each TCP connect, and a
    /// peer that accepts TCP and then stays silent (a pooler or balancer in front of a dead
    /// server, a flow a firewall dropped) would hold the startup exchange forever.
    pub async fn connect_raw(&self) -> Result<(Client, Connection)> {
        let hosts = u32::try_from(self.config.get_hosts().len().max(1)).unwrap_or(u32::MAX);
        let per_host = self.config.get_connect_timeout().copied();
        let limit = per_host.unwrap_or(CONNECT_TIMEOUT).saturating_mul(hosts) + CONNECT_TIMEOUT;
        within(
            limit,
            "cannot connect to the opt-out database",
            self.startup(),
        )
        .await
    }

    async fn startup(&self) -> Result<(Client, Connection)> {
        let result = match &self.tls {
            None => self
                .config
                .connect(NoTls)
                .await
                .map(|(c, conn)| (c, Connection::Plain(Box::new(conn)))),
            Some(tls) => self
                .config
                .connect(tls.clone())
                .await
                .map(|(c, conn)| (c, Connection::Tls(Box::new(conn)))),
        };
        result.map_err(|e| anyhow!("cannot connect to the opt-out database: {}", described(&e)))
    }

    /// The writers' pool (connections are made on first use and replaced once closed).
    pub fn pool(&self) -> Result<Pool> {
        // Verified: a pooled connection is checked with an empty query before it is handed out
        // again, so a backend the server ended (a restart, `pg_terminate_backend`) is replaced
        // instead of failing the next admin write with 503. Writes are rare; the check is one
        // round trip.
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        };
        let manager = match &self.tls {
            None => Manager::from_config(self.config.clone(), NoTls, manager_config),
            Some(tls) => Manager::from_config(self.config.clone(), tls.clone(), manager_config),
        };
        Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .context("cannot build the opt-out database pool")
    }
}

/// A connection future, plain or TLS.
pub enum Connection {
    Plain(
        Box<tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>>,
    ),
    Tls(
        Box<
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
                    tokio_postgres::Socket,
                >>::Stream,
            >,
        >,
    ),
}

impl Connection {
    /// Polls the connection for its next message (notices, notifications), driving it.
    pub fn poll_message(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<tokio_postgres::AsyncMessage, tokio_postgres::Error>>> {
        match self {
            Connection::Plain(c) => c.poll_message(cx),
            Connection::Tls(c) => c.poll_message(cx),
        }
    }
}

/// `work`, or an error saying `what` failed when the database has not answered within `limit`:
/// on a connection gone silent, keepalives do not end a wait (the peer's kernel answers them).
pub(super) async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(anyhow!("{what}: no answer within {limit:?}")),
    }
}

/// `context` for database results, the error told by [`described`] (never its DETAIL).
pub(super) trait DbContext<T> {
    fn db_context(self, what: &str) -> anyhow::Result<T>;
}

impl<T> DbContext<T> for std::result::Result<T, tokio_postgres::Error> {
    fn db_context(self, what: &str) -> anyhow::Result<T> {
        self.map_err(|e| anyhow!("{what}: {}", described(&e)))
    }
}

/// A database error in words, with its causes: the server's message and SQLSTATE where the
/// server sent one (never its DETAIL, which can quote a row's values, so never a customer id),
/// else each cause's own words (a TLS handshake's, a pool's). Never the URL or a password: no
/// error of the client holds them.
pub(super) fn described(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let db = err
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::as_db_error)
            .or_else(|| err.downcast_ref::<tokio_postgres::error::DbError>());
        let words = match db {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => err.to_string(),
        };
        if !text.ends_with(&words) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&words);
        }
        if db.is_some() {
            break;
        }
        next = err.source();
    }
    text
}

/// Removes `name=value` from a URL's query (or a key=value string) and returns the value,
/// percent-decoded.
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let prefix = format!("{name}=");
    if let Some((base, query)) = url.split_once('?') {
        let mut value = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| match kv.strip_prefix(&prefix) {
                Some(v) => {
                    value = Some(
                        percent_encoding::percent_decode_str(v)
                            .decode_utf8_lossy()
                            .into_owned(),
                    );
                    false
                }
                None => true,
            })
            .collect();
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (url, value);
    }
    if url.contains("://") {
        return (url.to_string(), None);
    }
    let mut value = None;
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|kv| match kv.strip_prefix(&prefix) {
            Some(v) => {
                value = Some(v.to_string());
                false
            }
            None => true,
        })
        .collect();
    (kept.join(" "), value)
}

/// Why the driver refused a database URL. Its reason is kept only when it names one of its own
/// option names (``invalid value for option `port` ``); every other reason may quote part of
/// the URL (in a key=value string, an unquoted space in a password makes its tail an "unknown
/// option"), so it is left out.
fn url_error(e: tokio_postgres::Error) -> anyhow::Error {
    let reason = std::error::Error::source(&e).map(ToString::to_string);
    match reason.filter(|r| r.starts_with("invalid value for option `")) {
        Some(reason) => anyhow!("cannot parse the database URL: {e}: {reason}"),
        None => anyhow!("cannot parse the database URL: {e}"),
    }
}

#[cfg(test)]
mod tests;
