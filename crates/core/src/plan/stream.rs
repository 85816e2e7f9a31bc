/*!
Streaming routes (`stream: ndjson`): a body of any size taken one line at a time. Each line is
one record, a JSON object, decided on its own by the same body step as a whole JSON body
(the same filter program, shape rules, duplicate-key and depth checks, opt-outs and subject
rules); nothing here is a second copy of a filter rule. What this module adds is framing:

- [`LineSplitter`] cuts arriving chunks into lines and holds at most one unfinished line, never
  more than `max_body_bytes` of it (413 `body_too_large` as soon as a line grows past that).
- [`NdjsonStream`] decides each complete line: forwarded (the filtered object plus `\n`),
  dropped (its customer opted out: counted in `records_dropped`, nothing written), skipped
  (a blank line), or refused, which ends the stream.
- [`plan_stream_head`] is everything decided before the partner is contacted: the head checks
  of [`super::plan`], the legal basis, the headers and query forwarded, and, on a route that
  honours opt-outs, that the opt-out set is loaded.

Line rules: a line ends at `\n`; one `\r` before it is dropped (CRLF files); a line holding
only spaces, tabs or `\r` is skipped; a last line without `\n` is a record like the others;
anything else (a BOM, a NUL, a `\r` inside a line, two values on one line) is whatever the
strict JSON scanner makes of it, which is a refusal.
*/
use super::body::{check_media_type, BodyStep};
use super::{
    headers, legal_basis, query, url, Collect, Incoming, OptOuts, Target, OPTOUTS_NOT_LOADED,
};
use crate::filter::{Change, Report};
use crate::optout::OptOutSet;
use crate::policy::{Limits, StreamFormat};
use crate::{Refusal, RefusalKind};

/// The content type of a streaming route's body: its format's media type, `charset=utf-8` if
/// given. Checked whether or not a body is announced (an empty stream is still a stream).
pub(super) fn check_stream_content_type(
    format: StreamFormat,
    headers: &[(&str, &str)],
) -> Result<(), Refusal> {
    let mut types = headers.iter().filter(|(n, _)| *n == "content-type");
    let first = types.next().map(|(_, v)| *v);
    check_media_type(first, format.media_type(), &|m| m == format.media_type())?;
    if types.next().is_some() {
        return Err(Refusal::new(
            RefusalKind::UnsupportedMediaType,
            "more than one content-type header",
        ));
    }
    Ok(())
}

/// What goes to the partner ahead of a streamed body.
#[derive(Debug, Clone)]
pub struct StreamHead {
    /// Path plus the filtered query.
    pub path_and_query: String,
    /// Allowed request headers (`content-type` as the stream's media type).
    pub headers: Vec<(String, String)>,
    pub legal_basis: Option<String>,
    /// The customer ids the route types in the URL sent, for the disclosure ledger (see
    /// [`super::Outgoing::url_subjects`]).
    pub url_subjects: Vec<String>,
}

/// Decides a streaming request's head, before any of its body is read and before the partner
/// is contacted. `target` must be a streaming route.
pub fn plan_stream_head(
    target: &Target,
    query: Option<&str>,
    incoming_headers: &[(&str, &str)],
    optouts: OptOuts<'_>,
) -> Result<StreamHead, Refusal> {
    let partner = &target.partner;
    let route = target.route();
    if route.stream.is_none() || route.filter.is_none() {
        return Err(Refusal::new(RefusalKind::Internal, "not a streaming route"));
    }
    super::check_head(target, incoming_headers, true)?;
    let legal_basis = legal_basis::legal_basis(partner, incoming_headers)?;
    if !partner.honor_optouts.is_empty() && matches!(optouts, OptOuts::NotLoaded) {
        return Err(Refusal::new(RefusalKind::NotReady, OPTOUTS_NOT_LOADED));
    }
    let (headers, _) = headers::forward_headers(
        partner,
        route,
        incoming_headers,
        legal_basis.as_deref(),
        true,
    );
    let (query, _) = query::filter_query(query, &route.query);
    url::check_url_for_opted_out_ids(target, &query, optouts)?;
    let url_subjects = url::ledger_url_subjects(target, &query, false);
    let mut path_and_query = target.upstream_path.clone();
    if !query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&query);
    }
    Ok(StreamHead {
        path_and_query,
        headers,
        legal_basis,
        url_subjects,
    })
}

/// Called with each complete line's number (1-based) and bytes (without `\n`).
pub type EachLine<'a> = dyn FnMut(u64, &[u8]) -> Result<(), Refusal> + 'a;

/// Cuts a byte stream into lines. Holds at most one unfinished line (plus the chunk that is
/// being cut), and refuses a line longer than `max_line` bytes (not counting its `\n` or
/// `\r\n`) as soon as more than that many bytes of it have arrived.
#[derive(Debug)]
pub struct LineSplitter {
    /// The unfinished line: the bytes after the last `\n` so far.
    pending: Vec<u8>,
    max_line: usize,
    /// Lines handed out so far (for messages: "line 3").
    lines: u64,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter {
            pending: Vec::new(),
            max_line,
            lines: 0,
        }
    }

    /// Calls `each` with every line `chunk` completes (without `\n`), in order, and keeps the
    /// unfinished rest. Lines inside the chunk are handed out where they are; only a line that
    /// spans chunks is copied. Stops at the first error (from `each`, or 413 for an overlong
    /// line).
    pub fn feed(&mut self, chunk: &[u8], each: &mut EachLine<'_>) -> Result<(), Refusal> {
        let mut rest = chunk;
        if !self.pending.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.pending.extend_from_slice(rest);
                return self.check_pending();
            };
            self.pending.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.pending);
            self.line(&line, each)?;
            // The allocation is kept for the next line that spans chunks.
            self.pending = line;
            self.pending.clear();
        }
        while let Some(end) = memchr::memchr(b'\n', rest) {
            self.line(&rest[..end], each)?;
            rest = &rest[end + 1..];
        }
        self.pending.extend_from_slice(rest);
        self.check_pending()
    }

    /// At the end of the body: the last line, when it has no `\n`.
    pub fn finish(&mut self, each: &mut EachLine<'_>) -> Result<(), Refusal> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.pending);
        self.lines += 1;
        each(self.lines, &line[..])
    }

    /// Hands out one complete line.
    fn line(&mut self, line: &[u8], each: &mut EachLine<'_>) -> Result<(), Refusal> {
        self.lines += 1;
        let len = line.strip_suffix(b"\r").unwrap_or(line).len();
        if len > self.max_line {
            return Err(self.too_long(len));
        }
        each(self.lines, line)
    }

    /// The unfinished line is refused as soon as it is over the limit (it may hold one `\r`
    /// more: the start of its CRLF).
    fn check_pending(&self) -> Result<(), Refusal> {
        let cr = self.pending.last() == Some(&b'\r');
        if self.pending.len() > self.max_line + usize::from(cr) {
            return Err(Refusal::new(
                RefusalKind::BodyTooLarge,
                format!(
                    "line {}: over the limit of {} bytes per line",
                    self.lines + 1,
                    self.max_line
                ),
            ));
        }
        Ok(())
    }

    fn too_long(&self, len: usize) -> Refusal {
        Refusal::new(
            RefusalKind::BodyTooLarge,
            format!(
                "line {}: {len} bytes is over the limit of {} bytes per line",
                self.lines, self.max_line
            ),
        )
    }
}

/// What became of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    /// Forwarded: the filtered record (and `\n`) was appended to the output.
    Forwarded,
    /// Its customer opted out: nothing written, counted in `records_dropped`.
    Dropped,
    /// A blank line: nothing written, not counted.
    Blank,
}

/// Decides the lines of one streamed body, keeping the counts of what was forwarded. The
/// counts of all lines are summed in [`NdjsonStream::report`]; subject ids are not kept there
/// (a stream may carry millions): [`NdjsonStream::decide`] hands each forwarded line's own
/// report to the caller instead.
pub struct NdjsonStream<'a> {
    target: &'a Target,
    limits: &'a Limits,
    /// Whether each forwarded line's report names its subject ids (for a ledger).
    subjects: bool,
    /// Whether what each forwarded line passes is noted in `report.forwarded` (for a shadow
    /// policy to compare; see [`NdjsonStream::note_forwarded`]).
    forwarded: bool,
    /// Whether each line's changes and each dropped line are noted in `report.changes`, their
    /// paths led by the line number (for `explain`, which holds the whole body).
    detail: bool,
    /// The sum over all lines decided so far.
    pub report: Report,
}

impl<'a> NdjsonStream<'a> {
    /// The lines of one body for `target` (a streaming route); `subjects`: whether each
    /// forwarded line's report names its subject ids (reading them costs a string per line).
    pub fn new(target: &'a Target, limits: &'a Limits, subjects: bool) -> NdjsonStream<'a> {
        NdjsonStream {
            target,
            limits,
            subjects,
            forwarded: false,
            detail: false,
            report: Report::default(),
        }
    }

    /// Also notes every value the forwarded lines pass, one record after the other, in
    /// `report.forwarded` (at most what a body of `len` bytes may note; past that the note is
    /// incomplete and is not compared).
    pub fn note_forwarded(&mut self, len: usize) {
        self.forwarded = true;
        self.report.forwarded = crate::filter::forwarded::Forwarded::for_body(len);
    }

    /// Decides line `number` (`line` without its `\n`) of a body for `target`; a forwarded
    /// record is appended to `out` with a `\n`. `on_record` sees the line's own report (its
    /// subject ids when asked for, for the ledger). A refusal names the line and ends the stream.
    pub fn decide(
        &mut self,
        optouts: OptOuts<'_>,
        number: u64,
        line: &[u8],
        out: &mut Vec<u8>,
        on_record: &mut dyn FnMut(&Report),
    ) -> Result<LineOutcome, Refusal> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
            return Ok(LineOutcome::Blank);
        }
        let at_line = |r: Refusal| Refusal::new(r.kind, format!("line {number}: {}", r.message));
        if memchr::memchr(b'\r', line).is_some() {
            return Err(at_line(Refusal::new(
                RefusalKind::BadRequest,
                "a carriage return inside a line (a line ends with `\\n` or `\\r\\n`)",
            )));
        }
        let first = line.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\r'));
        if first != Some(&b'{') {
            return Err(at_line(Refusal::new(
                RefusalKind::BadRequest,
                "each line of the stream must be one record, a JSON object",
            )));
        }
        let target = self.target;
        let (Some(program), Some(_)) = (&target.route().filter, target.route().stream) else {
            return Err(Refusal::new(RefusalKind::Internal, "not a streaming route"));
        };
        let step = BodyStep {
            partner: &target.partner,
            route: target.route(),
            limits: self.limits,
            optouts,
            collect: Collect {
                detail: self.detail,
                forwarded: self.forwarded,
                subjects: self.subjects,
            },
        };
        match step.run(program, line) {
            Ok(mut filtered) => {
                out.extend_from_slice(&filtered.body);
                out.push(b'\n');
                on_record(&filtered.report);
                let changes = std::mem::take(&mut filtered.report.changes);
                absorb(&mut self.report, filtered.report);
                let at = |path: String| format!("line {number}: {path}");
                self.report
                    .changes
                    .extend(changes.into_iter().map(|change| match change {
                        Change::Removed { path } => Change::Removed { path: at(path) },
                        Change::Transformed { path, transform } => Change::Transformed {
                            path: at(path),
                            transform,
                        },
                        Change::RecordDropped { path, subject } => Change::RecordDropped {
                            path: at(path),
                            subject,
                        },
                    }));
                Ok(LineOutcome::Forwarded)
            }
            // The line is its own record: its customer opted out, so it is dropped, as a
            // record of a whole body would be.
            // Its unknown fields count as drift, as a dropped record's in a whole body do.
            Err(r) if r.kind == RefusalKind::SubjectOptedOut => {
                self.report.records_dropped += 1;
                let mut subject = None;
                if let Some(again) = without_optouts(step, program, line) {
                    subject = again.subjects.into_iter().next();
                    add_unknown(&mut self.report, again.unknown_fields, again.unknown);
                }
                if self.detail {
                    self.report.changes.push(Change::RecordDropped {
                        path: format!("line {number}"),
                        subject: subject.unwrap_or_default(),
                    });
                }
                Ok(LineOutcome::Dropped)
            }
            Err(r) => Err(at_line(r)),
        }
    }
}

/// The report of a line the step dropped for its opt-out: the same decision again without
/// opt-outs, with its subject id (its unknown fields for drift, its subject for `explain`).
fn without_optouts(
    step: BodyStep<'_>,
    program: &crate::filter::FilterProgram,
    line: &[u8],
) -> Option<Report> {
    let nobody = OptOutSet::default();
    let step = BodyStep {
        optouts: OptOuts::Loaded(&nobody),
        collect: Collect {
            detail: false,
            forwarded: false,
            subjects: true,
        },
        ..step
    };
    step.run(program, line).ok().map(|f| f.report)
}

/// Adds one forwarded line's counts to the running total (subject ids and per-field changes
/// excepted). Every forwarded line is one record, whether or not the route names a subject.
fn absorb(total: &mut Report, line: Report) {
    total.fields_removed += line.fields_removed;
    for (t, n) in total.transformed.iter_mut().zip(line.transformed) {
        *t += n;
    }
    total.records_forwarded += 1;
    if !line.forwarded.is_empty() || !line.forwarded.complete() {
        total.forwarded.append(&line.forwarded);
    }
    if total.matched.len() < line.matched.len() {
        total.matched.resize(line.matched.len(), 0);
    }
    for (t, n) in total.matched.iter_mut().zip(line.matched) {
        *t += n;
    }
    add_unknown(total, line.unknown_fields, line.unknown);
}

/// Adds one line's unknown fields (drift) to the running total.
fn add_unknown(total: &mut Report, count: u64, unknown: Vec<crate::drift::UnknownField>) {
    total.unknown_fields += count;
    for field in unknown {
        let at = total.unknown.iter().position(|f| f.path == field.path);
        match at {
            Some(i) => {
                total.unknown[i].count += field.count;
                total.unknown[i].shapes = total.unknown[i].shapes.union(field.shapes);
            }
            None if total.unknown.len() < crate::drift::MAX_PATHS_PER_REQUEST => {
                total.unknown.push(field)
            }
            None => {}
        }
    }
}

/// A whole streamed body decided at once (for `explain`, policy tests and a shadow policy's
/// sample of a stream, which hold the body anyway): the bytes the partner would receive and the
/// summed report (with what was forwarded noted when `collect` asks for it).
pub(super) fn filter_whole(
    target: &Target,
    incoming: &Incoming<'_>,
    limits: &Limits,
    optouts: OptOuts<'_>,
    collect: Collect,
) -> Result<(Vec<u8>, Report), Refusal> {
    let mut stream = NdjsonStream::new(target, limits, true);
    stream.detail = collect.detail;
    if collect.forwarded {
        stream.note_forwarded(incoming.body.len());
    }
    let mut splitter = LineSplitter::new(limits.max_body_bytes);
    let mut out = Vec::with_capacity(incoming.body.len());
    let mut subjects = Vec::new();
    {
        let mut each = |n: u64, line: &[u8]| {
            stream
                .decide(optouts, n, line, &mut out, &mut |r| {
                    subjects.extend(r.subjects.iter().cloned())
                })
                .map(|_| ())
        };
        splitter.feed(incoming.body, &mut each)?;
        splitter.finish(&mut each)?;
    }
    let mut report = stream.report;
    report.subjects = subjects;
    Ok((out, report))
}

#[cfg(test)]
mod tests;
