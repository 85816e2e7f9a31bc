/*!
The process's log: one JSON object per line on stderr (or readable text with
`--log-format text`), built with tracing-subscriber.

What may reach a line is decided here, once:
- Our own code logs events (start, reload, store errors) and one access line per request
  ([`ACCESS_TARGET`]) whose fields are chosen one by one in `proxy`: never a body, a field
  value, a query string, a customer id, a token, a header value or a client IP.
- Libraries (pingora above all) log through the `log` crate, bridged with tracing-log. Their
  lines can carry request data: pingora's error lines name the request path and query, its
  debug lines dump raw request buffers, and its handshake errors name the client's address.
  So library records are capped at `info` whatever `RUST_LOG` says, and a library message
  that carries runtime values is replaced by a fixed text naming where it came from
  (`target` and source line); only messages that are constant text pass as written.
  Library events that use tracing directly are capped the same way and keep no message.
- A panic (ours or a library's, on any thread) is one error line naming where it happened and
  on which thread; its message passes only when it is constant text, since a formatted one can
  quote what the code was handling (Rust's default hook would print it as plain text).

Lines are written to stderr by a thread of their own (tracing-appender): a stderr that blocks
(a log collector that stopped reading) must never hold up a request, nor the exit. At most
[`BUFFERED_LINES`] wait for it; past that, lines are dropped, and [`flush`] says how many.
*/
use std::fmt;
use std::sync::Mutex;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_log::NormalizeEvent;
use tracing_subscriber::filter::{filter_fn, EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Target of the per-request access line.
pub const ACCESS_TARGET: &str = "partner_gateway::access";

/// The text that replaces a library message carrying runtime values.
pub const WITHHELD: &str = "library message withheld (it may carry request data)";

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (the default).
    Json,
    /// The same fields as readable text, for a terminal.
    Text,
}

/// Whether a target belongs to this project (everything else is a library).
fn is_ours(target: &str) -> bool {
    ["partner_gateway", "gateway_core"]
        .iter()
        .any(|ours| target == *ours || target.starts_with(&format!("{ours}::")))
}

/// Lines waiting for a blocked stderr, at most (a few MB); newer ones are dropped.
pub const BUFFERED_LINES: usize = 10_000;

/// The writer thread's guard and its count of dropped lines, until [`flush`].
static WRITER: Mutex<Option<(WorkerGuard, ErrorCounter)>> = Mutex::new(None);

/// How long the process waits at exit for the lines still queued.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Writes out the lines still waiting and ends the writer thread: called before the process
/// exits; later lines are dropped. A stderr that stays blocked must not keep the process from
/// exiting, so the wait is bounded and runs on a thread of its own (the writer thread holds
/// stderr while it is blocked). How many lines were dropped is said as a line of its own, in
/// the queue like every other.
pub fn flush() {
    let taken = WRITER.lock().map(|mut w| w.take()).unwrap_or_default();
    let Some((guard, dropped)) = taken else {
        return;
    };
    let n = dropped.dropped_lines();
    if n > 0 {
        tracing::warn!(
            dropped = n,
            "log lines were dropped while stderr was blocked"
        );
    }
    let (done, finished) = std::sync::mpsc::channel();
    let waiting = std::thread::Builder::new()
        .name("log-flush".into())
        .spawn(move || {
            drop(guard);
            let _ = done.send(());
        });
    if waiting.is_ok() {
        let _ = finished.recv_timeout(FLUSH_WAIT);
    }
}

/// Library lines are never more verbose than this, whatever `RUST_LOG` says.
const LIBRARY_MAX: Level = Level::INFO;

/// Installs the process-wide logger. `default_directive` applies when `RUST_LOG` is unset.
/// Calling it twice keeps the first logger.
pub fn init(format: LogFormat, default_directive: &str) {
    let env = EnvFilter::builder()
        .with_default_directive(
            default_directive
                .parse()
                .unwrap_or_else(|_| LevelFilter::INFO.into()),
        )
        .from_env_lossy();
    let cap = filter_fn(|meta| is_ours(meta.target()) || *meta.level() <= LIBRARY_MAX);
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("log-writer")
        // Buffered: the writer thread flushes whenever its queue is empty, so under load the
        // lines queued meanwhile go out in one write, and at rest each line at once.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let dropped = writer.error_counter();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .event_format(Lines { format })
        .with_filter(cap);
    let subscriber = tracing_subscriber::registry().with(env).with(layer);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return;
    }
    if let Ok(mut w) = WRITER.lock() {
        *w = Some((guard, dropped));
    }
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let message = info.payload().downcast_ref::<&'static str>().copied();
        log::error!("{}", panic_line(info.location(), thread.name(), message));
    }));
    if log::set_boxed_logger(Box::new(Bridge)).is_ok() {
        let max = match LevelFilter::current().into_level() {
            None => log::LevelFilter::Off,
            Some(Level::ERROR) => log::LevelFilter::Error,
            Some(Level::WARN) => log::LevelFilter::Warn,
            Some(Level::INFO) => log::LevelFilter::Info,
            Some(Level::DEBUG) => log::LevelFilter::Debug,
            Some(Level::TRACE) => log::LevelFilter::Trace,
        };
        log::set_max_level(max);
    }
}

/// The log line of a panic: where, on which thread, and its message only when it is constant
/// text (`panic!("literal")`); a formatted message (`unwrap`, `expect`, `panic!("{x}")`) is
/// withheld.
fn panic_line(
    location: Option<&std::panic::Location<'_>>,
    thread: Option<&str>,
    constant_message: Option<&'static str>,
) -> String {
    let at = location.map_or_else(
        || "an unknown place".to_string(),
        |l| format!("{}:{}", l.file(), l.line()),
    );
    let message = constant_message.unwrap_or("message withheld (it may carry request data)");
    format!(
        "panicked at {at} on thread {:?}: {message}",
        thread.unwrap_or("unnamed")
    )
}

/// The `log` → tracing bridge, with the library rule of this module applied first.
struct Bridge;

impl log::Log for Bridge {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        is_ours(meta.target()) || meta.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if is_ours(record.target()) || record.args().as_str().is_some() {
            tracing_log::format_trace(record).ok();
            return;
        }
        let line = record.line().map(|l| l.to_string()).unwrap_or_default();
        tracing_log::format_trace(
            &log::Record::builder()
                .args(format_args!("{WITHHELD}: {}:{line}", record.target()))
                .level(record.level())
                .target(record.target())
                .module_path(record.module_path())
                .build(),
        )
        .ok();
    }

    fn flush(&self) {}
}

/// Collects an event's fields as JSON values, in the order they were written.
#[derive(Default)]
struct Fields {
    list: Vec<(String, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, Value::from(format!("{value:?}")));
    }
}

impl Fields {
    fn insert(&mut self, field: &Field, value: Value) {
        if !field.name().starts_with("log.") {
            self.list.push((field.name().to_string(), value));
        }
    }
}

/// Formats each event as one line (see the module docs for what a line may hold).
struct Lines {
    format: LogFormat,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = vec![
            ("time".to_string(), Value::from(now_rfc3339())),
            (
                "level".to_string(),
                Value::from(meta.level().as_str().to_ascii_lowercase()),
            ),
        ];
        if meta.target() == ACCESS_TARGET {
            // Every declared field, in order; one without a value (no refusal, no partner
            // contacted) is written as null so each access line has the same keys.
            let mut recorded = std::mem::take(&mut fields.list);
            for field in meta.fields() {
                let value = recorded
                    .iter()
                    .position(|(k, _)| k == field.name())
                    .map_or(Value::Null, |i| recorded.swap_remove(i).1);
                fields.list.push((field.name().to_string(), value));
            }
        } else {
            line.push(("target".into(), Value::from(meta.target())));
            if !is_ours(meta.target()) && !event.is_log() {
                // A library's own tracing event: its fields are not ours to vouch for.
                fields.list = vec![("message".into(), Value::from(WITHHELD))];
            }
        }
        line.append(&mut fields.list);
        let text = match self.format {
            LogFormat::Json => json_line(&line),
            LogFormat::Text => text_line(&line),
        };
        writeln!(writer, "{text}")
    }
}

/// Writes one error line in `format` straight to stderr, past every filter: a refusal to start
/// is never silent, whatever `RUST_LOG` says. Lines queued before it go out first.
pub fn write_unfiltered(format: LogFormat, target: &str, message: &str) {
    flush();
    let line = [
        ("time".to_string(), Value::from(now_rfc3339())),
        ("level".to_string(), Value::from("error")),
        ("target".to_string(), Value::from(target)),
        ("message".to_string(), Value::from(message)),
    ];
    let text = match format {
        LogFormat::Json => json_line(&line),
        LogFormat::Text => text_line(&line),
    };
    // Not `eprintln!`: a stderr that cannot be written must not turn exit 1 into a panic.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{text}\n").as_bytes());
}

/// One JSON object, members in the order given (time and level first).
fn json_line(line: &[(String, Value)]) -> String {
    let members: Vec<String> = line
        .iter()
        .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// `time LEVEL target: message key=value …` for terminals.
fn text_line(line: &[(String, Value)]) -> String {
    let get = |k: &str| {
        line.iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| v.as_str())
    };
    let level = get("level").unwrap_or("").to_ascii_uppercase();
    let mut out = format!("{} {level:5}", get("time").unwrap_or(""));
    if let Some(target) = get("target") {
        out.push(' ');
        out.push_str(target);
        out.push(':');
    }
    if let Some(message) = get("message") {
        out.push(' ');
        out.push_str(message);
    }
    for (key, value) in line {
        if matches!(key.as_str(), "time" | "level" | "target" | "message") {
            continue;
        }
        match value {
            Value::String(s) => out.push_str(&format!(" {key}={s:?}")),
            other => out.push_str(&format!(" {key}={other}")),
        }
    }
    out
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
