//! [`Filter`]: follows the compiled trie over the [`Scanner`] and writes the partner's body,
//! the report, and the per-record opt-out decision.
use std::borrow::Cow;

use super::super::compile::{fingerprint, same_key, Found, Kind, Members, Node, NodeId};
use super::super::transform::{self, Hmac256};
use super::super::{
    Change, FilterOptions, FilterProgram, Filtered, OptOutLookup, Report, Transform,
};
use super::lex::{check_text, copy_span, describe, starts_value};
use super::predict::{removed_slot, Cursor, KeyOrders, Known, REMOVED_SLOTS};
use super::unknown::Unknowns;
use super::{bad, broken, fail, unescape, Fail, NotAnId, Scanner};
use crate::drift::Shapes;
use crate::optout::id;
use crate::RefusalKind;

/// Report counters at the start of a record, restored when the record is dropped.
struct Snapshot {
    fields_removed: u64,
    transformed: [u64; 4],
    changes: usize,
    forwarded: super::super::forwarded::Mark,
}

/// What an object being read has seen so far.
struct Open<'a> {
    records: bool,
    /// A record whose subject id is read (for opt-outs or the ledger).
    want_subject: bool,
    /// The object's node when it stands for one drift path.
    at: Option<NodeId>,
    /// No member written yet.
    first: bool,
    subject: Option<Result<Cow<'a, str>, NotAnId<'a>>>,
    /// A member case-insensitive readers take for the subject.
    folded: Option<Fail>,
    /// Where the object is in its node's remembered key order.
    keys: Cursor,
    node: NodeId,
}

struct Filter<'a, 'p> {
    sc: Scanner<'a>,
    out: Vec<u8>,
    report: Report,
    program: &'p FilterProgram,
    detail: bool,
    optouts: Option<&'p dyn OptOutLookup>,
    /// Collect forwarded records' subject ids.
    subjects: bool,
    hmac: Option<Hmac256>,
    scratch: Vec<u8>,
    /// `report.matched` at the start of the record being read (restored if it is dropped).
    saved_matched: Vec<u64>,
    unknowns: Unknowns<'a>,
    /// Until a subtree passed whole is found not to be copied as it stands.
    verbatim_subtrees: bool,
    /// Note every forwarded value in `report.forwarded`.
    forwarded: bool,
}

pub(in crate::filter) fn filter(
    program: &FilterProgram,
    body: &[u8],
    options: &FilterOptions<'_>,
    forwarded: bool,
) -> Result<Filtered, Fail> {
    if !program.takes_body {
        return Err(bad("this route takes no body".into()));
    }
    // Decided before reading the body, so the outcome never depends on whether a
    // pseudonymized field happens to be present.
    let hmac = match (program.uses_pseudonymize, options.pseudonymize_key) {
        (false, _) => None,
        (true, Some(key)) => Some(transform::hmac_for(key).ok_or_else(|| {
            fail(
                RefusalKind::NotReady,
                "this partner's pseudonymization key cannot be used",
            )
        })?),
        (true, None) => {
            return Err(fail(
                RefusalKind::NotReady,
                "the policy pseudonymizes a field but this partner has no pseudonymization key",
            ))
        }
    };
    if options.optouts.is_some() && program.subject.is_none() {
        return Err(fail(RefusalKind::SubjectMissing,
            "this route honours opt-outs but its policy names no records and subject, so opt-outs cannot be checked"
                ,
        ));
    }
    let text = check_text(body)?;
    let mut f = Filter {
        sc: Scanner::new(text, options.max_depth),
        out: Vec::with_capacity(body.len()),
        report: Report {
            matched: vec![0; program.sources],
            ..Report::default()
        },
        program,
        detail: options.detail,
        optouts: options.optouts,
        subjects: options.subjects,
        hmac,
        scratch: Vec::new(),
        saved_matched: Vec::new(),
        unknowns: Unknowns::default(),
        verbatim_subtrees: true,
        forwarded,
    };
    if options.detail {
        f.sc.hidden_paths = Some(Vec::new());
    }
    if forwarded {
        f.report.forwarded = super::super::forwarded::Forwarded::for_body(body.len());
    }
    f.sc.start()?;
    f.walk(program.root)?;
    f.sc.finish()?;
    Ok(Filtered {
        body: f.out,
        report: f.report,
    })
}

impl<'a, 'p> Filter<'a, 'p> {
    /// Handles the value at `pos` as node `id` says; false when it is a record that was dropped.
    fn walk(&mut self, id: NodeId) -> Result<bool, Fail> {
        let program = self.program;
        let Some(node) = program.nodes.get(id as usize) else {
            return Err(broken("the filter program is inconsistent"));
        };
        self.matched(node);
        match &node.kind {
            Kind::Scalar => self.scalar().map(|()| true),
            Kind::Transform(t) => self.transform(*t).map(|()| true),
            Kind::Subtree => self.subtree(id).map(|()| true),
            Kind::Object(members) => {
                let at = node.one_path.then_some(id);
                self.object(id, members, node.records, at)
            }
            Kind::Array { elements } => self.array(*elements).map(|()| true),
        }
    }

    /// Counts a forwarded value of `node` for the paths it stands for.
    #[inline]
    fn matched(&mut self, node: &Node) {
        for &source in node.sources.iter() {
            if let Some(n) = self.report.matched.get_mut(source as usize) {
                *n += 1;
            }
        }
    }

    /// A member whose node passes a scalar, written `"name":value` (no whitespace) from
    /// `key_start`: what `walk` does for its value, with name and value copied in one piece.
    /// False, having done nothing, when the node is not one that passes a scalar.
    #[inline]
    fn scalar_member(&mut self, child: NodeId, key_start: usize) -> Result<bool, Fail> {
        let program = self.program;
        let Some(node) = program.nodes.get(child as usize) else {
            return Ok(false);
        };
        if !matches!(node.kind, Kind::Scalar) {
            return Ok(false);
        }
        self.matched(node);
        self.scalar_from(key_start)?;
        Ok(true)
    }

    // Containers and transforms are not inlined into `walk`, which every value goes through:
    // a small `walk` keeps the call per scalar cheap.
    #[inline(never)]
    fn subtree(&mut self, id: NodeId) -> Result<(), Fail> {
        let start = self.out.len();
        if !self.verbatim_subtrees || !self.subtree_verbatim(id)? {
            self.sc.skip_value::<true>(&mut self.out, None)?;
        }
        if self.forwarded {
            self.report.forwarded.subtree(&self.out[start..]);
        }
        self.report.fields_removed += std::mem::take(&mut self.sc.hidden_removed);
        if let Some(paths) = self.sc.hidden_paths.as_mut() {
            self.report
                .changes
                .extend(paths.drain(..).map(|path| Change::Removed { path }));
        }
        Ok(())
    }

    /// A subtree passed whole is usually copied as it stands (no whitespace, every key
    /// nameable): checks it without copying and, if so, copies its bytes in one go; otherwise
    /// returns false with the position back at its start (and the next subtrees of the request
    /// are copied piece by piece at once).
    fn subtree_verbatim(&mut self, id: NodeId) -> Result<bool, Fail> {
        let start = self.sc.pos;
        let keys = self.cursor(id as usize);
        self.sc.altered = false;
        self.sc.watch_names = true;
        let checked = self.sc.skip_value::<false>(&mut self.out, Some(keys));
        self.sc.watch_names = false;
        checked?;
        if self.sc.altered {
            self.sc.pos = start;
            self.verbatim_subtrees = false;
            return Ok(false);
        }
        let input = self.sc.input;
        self.out.extend_from_slice(&input[start..self.sc.pos]);
        Ok(true)
    }

    #[inline]
    fn scalar(&mut self) -> Result<(), Fail> {
        self.scalar_from(self.sc.pos)
    }

    /// Reads the scalar at `pos` and copies the input from `from` to its end.
    #[inline]
    fn scalar_from(&mut self, from: usize) -> Result<(), Fail> {
        if let Some(b'{' | b'[') = self.sc.peek() {
            return Err(bad(format!(
                "`{}` holds {}, but the policy passes only a string, number, boolean or null there",
                self.sc.path(),
                describe(self.sc.peek())
            )));
        }
        let (_, end) = self.sc.scalar()?;
        copy_span(&mut self.out, self.sc.input, from, end);
        self.kept(None);
        Ok(())
    }

    /// Notes a forwarded value at the current path (when asked to).
    #[inline]
    fn kept(&mut self, transform: Option<Transform>) {
        if self.forwarded {
            self.report.forwarded.value(transform);
        }
    }

    #[inline(never)]
    fn transform(&mut self, t: Transform) -> Result<(), Fail> {
        let input = self.sc.input;
        let start = self.sc.pos;
        match self.sc.peek() {
            Some(b'"') => {
                let escaped = self.sc.scan_string()?;
                let inner = &input[start + 1..self.sc.pos - 1];
                if escaped {
                    self.scratch.clear();
                    unescape(inner, &mut self.scratch);
                    transform::apply(t, &self.scratch, self.hmac.as_ref(), &mut self.out)?;
                } else {
                    transform::apply(t, inner, self.hmac.as_ref(), &mut self.out)?;
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                self.sc.scan_number()?;
                transform::apply(
                    t,
                    &input[start..self.sc.pos],
                    self.hmac.as_ref(),
                    &mut self.out,
                )?;
            }
            Some(b'n') => {
                self.sc.literal(b"null")?;
                self.out.extend_from_slice(b"null");
                self.kept(None);
                return Ok(());
            }
            Some(b'{' | b'[' | b't' | b'f') => {
                return Err(bad(format!(
                    "`{}` holds {}, but transform {} accepts only a string, number or null",
                    self.sc.path(),
                    describe(self.sc.peek()),
                    t.name()
                )))
            }
            _ => return Err(self.sc.unexpected("a JSON value")),
        }
        self.report.transformed[t as usize] += 1;
        self.kept(Some(t));
        if self.detail {
            self.report.changes.push(Change::Transformed {
                path: self.sc.path(),
                transform: t,
            });
        }
        Ok(())
    }

    /// Where the policy expects an object: `false` when the value is a `null` the policy
    /// allows there (written out already), `true` at an object's `{`; a refusal otherwise.
    fn object_expected(&mut self, records: bool) -> Result<bool, Fail> {
        match self.sc.peek() {
            Some(b'{') => Ok(true),
            Some(b'n') if !records => {
                self.sc.literal(b"null")?;
                self.out.extend_from_slice(b"null");
                self.kept(None);
                Ok(false)
            }
            other if !starts_value(other) => Err(self.sc.unexpected("a JSON value")),
            other if records => Err(bad(format!(
                "record `{}` is {}, but records must be objects",
                self.sc.path(),
                describe(other)
            ))),
            other => Err(bad(format!(
                "`{}` is {}, but the policy expects an object there",
                self.sc.path(),
                describe(other)
            ))),
        }
    }

    /// `at`: the object's node when it stands for one drift path.
    #[inline(never)]
    fn object(
        &mut self,
        id: NodeId,
        members: &'p Members,
        records: bool,
        at: Option<NodeId>,
    ) -> Result<bool, Fail> {
        if !self.object_expected(records)? {
            return Ok(true);
        }
        self.sc.open(true)?;
        self.sc.pos += 1;
        self.out.push(b'{');
        let snapshot = records.then_some(Snapshot {
            fields_removed: self.report.fields_removed,
            transformed: self.report.transformed,
            changes: self.report.changes.len(),
            forwarded: self.report.forwarded.mark(),
        });
        if records && self.optouts.is_some() {
            self.saved_matched.clone_from(&self.report.matched);
        }
        let mut open = Open {
            records,
            want_subject: records && (self.optouts.is_some() || self.subjects),
            at,
            first: true,
            subject: None,
            folded: None,
            keys: self.cursor(id as usize),
            node: id,
        };
        self.sc.skip_ws();
        if self.sc.peek() != Some(b'}') {
            loop {
                self.member(members, &mut open)?;
                if self.sc.compact_comma() {
                    continue;
                }
                self.sc.skip_ws();
                match self.sc.peek() {
                    Some(b',') => {
                        self.sc.pos += 1;
                        self.sc.skip_ws();
                    }
                    Some(b'}') => break,
                    _ => return Err(self.sc.unexpected("`,` or `}`")),
                }
            }
        }
        self.sc.pos += 1;
        self.out.push(b'}');
        self.sc.close();
        if open.first {
            self.kept(None); // `{}`
        }
        match snapshot {
            None => Ok(true),
            Some(snapshot) => {
                self.finish_record(snapshot, open.want_subject, open.subject, open.folded)
            }
        }
    }

    /// Reads one member of an object (at its name's `"`): keeps it through its node, or
    /// removes it.
    fn member(&mut self, members: &'p Members, open: &mut Open<'a>) -> Result<(), Fail> {
        if self.sc.peek() != Some(b'"') {
            return Err(self.sc.unexpected("a member name in double quotes"));
        }
        let input = self.sc.input;
        let key_start = self.sc.pos;
        let (fp, found, subject_key, drift) = match self.sc.take_predicted_key(&mut open.keys) {
            Some(known) => (known.fp, known.found, known.subject, known.drift),
            None => {
                let (fp, found, subject_key) = self.member_name(members, open)?;
                (fp, found, subject_key, None)
            }
        };
        let is_subject = open.want_subject && subject_key;
        let key_end = self.sc.pos;
        self.sc.colon()?;
        let value_start = self.sc.pos;
        if is_subject && self.optouts.is_some() {
            self.subject_is_scalar()?;
        }
        match found {
            Found::Child(child) => {
                if !open.first {
                    self.out.push(b',');
                }
                open.first = false;
                // A scalar written `"name":value` is copied in one piece.
                let whole = value_start == key_end + 1
                    && !self.forwarded
                    && self.scalar_member(child, key_start)?;
                if !whole {
                    let name = &input[key_start..key_end];
                    copy_span(&mut self.out, input, key_start, key_end);
                    self.out.push(b':');
                    let depth = self
                        .forwarded
                        .then(|| self.report.forwarded.enter_member(name));
                    // Records are array elements or the root, never members: nothing beneath a
                    // member is dropped.
                    self.walk(child)?;
                    if let Some(depth) = depth {
                        self.report.forwarded.leave(depth);
                    }
                }
            }
            Found::Removed => self.remove_member(None, open, fp)?,
            // A record's subject member is named by the route's `subject`: removed unless
            // allowed, but no drift (and so never suggested for an allow list).
            Found::Unknown if open.records && subject_key => self.remove_member(None, open, fp)?,
            Found::Unknown => self.remove_member(Some(drift), open, fp)?,
        }
        if is_subject {
            open.subject = Some(self.sc.subject_id(value_start));
        }
        Ok(())
    }

    /// A key-order cursor for a new object remembered in `slot` (see `predict`).
    #[inline]
    fn cursor(&mut self, slot: usize) -> Cursor {
        let slots = self.program.nodes.len() + REMOVED_SLOTS;
        self.sc
            .orders
            .cursor(slot, slots, self.program.predict_keys)
    }

    /// Reads the name of a member (at its `"`) that key-order prediction did not foresee,
    /// checks it and records it: its fingerprint, what the policy says about it, and whether
    /// it is the subject's name.
    #[inline(never)]
    fn member_name(
        &mut self,
        members: &'p Members,
        open: &mut Open<'a>,
    ) -> Result<(u64, Found, bool), Fail> {
        let key_start = self.sc.pos;
        let key = self.sc.read_key()?;
        let fp = fingerprint(&key);
        let found = members.find(&key, fp);
        if let Some(name) = members.folds_onto_guarded(&key, fp) {
            return Err(self.folded_member(&key, name));
        }
        let subject_key = self
            .program
            .subject
            .as_deref()
            .is_some_and(|subject| same_key(subject, &key));
        let is_subject = open.want_subject && subject_key;
        let check_fold =
            open.records && self.optouts.is_some() && !is_subject && open.folded.is_none();
        let learning = KeyOrders::learning(&open.keys);
        let mut folds = false;
        if check_fold || (learning && !subject_key) {
            let folded = self.folded_subject(&key);
            folds = folded.is_some();
            if check_fold {
                open.folded = folded;
            }
        }
        let known = (learning && !folds)
            .then(|| Known::of(key_start, &key, fp, found, subject_key))
            .flatten();
        self.sc
            .add_unforeseen_key(&mut open.keys, (key, fp, key_start), known)?;
        Ok((fp, found, subject_key))
    }

    /// An object or array where the customer id belongs is a missing subject (422), whatever
    /// shape the policy allows for that member.
    fn subject_is_scalar(&self) -> Result<(), Fail> {
        if !matches!(self.sc.peek(), Some(b'{' | b'[')) {
            return Ok(());
        }
        Err(fail(RefusalKind::SubjectMissing, format!(
            "record `{}` has no valid subject id: `{}` is an object or array (expected a non-empty string or an integer)",
            // The record's path: the scanner is at its subject member.
            self.sc.path_upto(self.sc.frames.len().saturating_sub(1)),
            String::from_utf8_lossy(self.program.subject.as_deref().unwrap_or_default())
        )))
    }

    /// Skips (and checks) a member no path keeps: `None` when a path names it for removal,
    /// otherwise it is drift, whose entry in the report may be known already (see
    /// [`Filter::note_unknown`]).
    fn remove_member(
        &mut self,
        unknown: Option<Option<u32>>,
        open: &Open<'a>,
        fp: u64,
    ) -> Result<(), Fail> {
        let shapes = Shapes::of_first_byte(self.sc.peek());
        if shapes.scalar {
            self.sc.scalar()?;
        } else {
            let slot = removed_slot(self.program.nodes.len(), open.node, fp);
            let keys = self.cursor(slot);
            self.sc.skip_value::<false>(&mut self.out, Some(keys))?;
        }
        self.report.fields_removed += 1;
        if let Some(drift) = unknown {
            self.note_unknown(shapes, open, fp, drift);
        }
        if self.detail {
            self.report.changes.push(Change::Removed {
                path: self.sc.path(),
            });
        }
        Ok(())
    }

    /// A record member that case-insensitive JSON readers take for the subject member
    /// (`Customer_Id` next to `customer_id`) could make the partner judge the record by another
    /// customer than the gateway did: the refusal (400) for it, given once the record's own
    /// subject is known to be valid.
    fn folded_subject(&self, key: &[u8]) -> Option<Fail> {
        let subject = self.program.subject.as_deref().unwrap_or_default();
        id::name_folds_onto(key, subject).then(|| {
            let (key, subject) = (String::from_utf8_lossy(key), String::from_utf8_lossy(subject));
            bad(format!(
                "record `{}` has a member {key:?}, which case-insensitive JSON readers take for the subject `{subject}`",
                // The record, not the member read before this one.
                self.sc.path_upto(self.sc.frames.len().saturating_sub(1))
            ))
        })
    }

    /// The refusal (400) for a member `key` that `*` passes while case-insensitive JSON readers
    /// take it for `name`, which the policy transforms or removes beside it.
    #[cold]
    fn folded_member(&self, key: &[u8], name: &[u8]) -> Fail {
        let (key, name) = (String::from_utf8_lossy(key), String::from_utf8_lossy(name));
        bad(format!(
            "`{}` has a member {key:?}, which case-insensitive JSON readers take for {name:?}, which the policy transforms or removes there",
            // The object, not the member read before this one.
            self.sc.path_upto(self.sc.frames.len().saturating_sub(1))
        ))
    }

    /// At the end of a record: checks its subject against the opt-outs and counts it.
    fn finish_record(
        &mut self,
        snapshot: Snapshot,
        want_subject: bool,
        subject: Option<Result<Cow<'a, str>, NotAnId<'a>>>,
        folded: Option<Fail>,
    ) -> Result<bool, Fail> {
        let Some(optouts) = self.optouts.filter(|_| want_subject) else {
            // Without opt-outs a record is never refused for its subject; the ledger keys an
            // id that is not valid by its text as written (none when it has none).
            let text = match subject {
                Some(Ok(subject)) => Some(subject),
                Some(Err(not)) => not.text,
                None => None,
            };
            if let (true, Some(text)) = (want_subject, text) {
                self.report.subjects.push(text.into_owned());
            }
            self.report.records_forwarded += 1;
            return Ok(true);
        };
        {
            // The subject member's name, for the refusals only.
            let name =
                || String::from_utf8_lossy(self.program.subject.as_deref().unwrap_or_default());
            let subject = match subject {
                Some(Ok(subject)) => subject,
                Some(Err(NotAnId { what, .. })) => {
                    return Err(fail(RefusalKind::SubjectMissing, format!(
                        "record `{}` has no valid subject id: `{}` is {what} (expected a non-empty string or an integer)",
                        self.sc.path(),
                        name()
                    )))
                }
                None => {
                    return Err(fail(RefusalKind::SubjectMissing, format!(
                        "record `{}` has no subject id: member `{}` is missing",
                        self.sc.path(),
                        name()
                    )))
                }
            };
            if let Some(refusal) = folded {
                return Err(refusal);
            }
            if id::is_opted_out(optouts, &subject) {
                if self.program.single_record {
                    return Err(fail(
                        RefusalKind::SubjectOptedOut,
                        "the customer this record is about opted out of sharing with this partner",
                    ));
                }
                self.report.fields_removed = snapshot.fields_removed;
                self.report.transformed = snapshot.transformed;
                self.report.changes.truncate(snapshot.changes);
                self.report.forwarded.truncate(snapshot.forwarded);
                self.report.matched.clone_from(&self.saved_matched);
                self.report.records_dropped += 1;
                if self.detail {
                    self.report.changes.push(Change::RecordDropped {
                        path: self.sc.path(),
                        subject: subject.into_owned(),
                    });
                }
                return Ok(false);
            }
            if self.subjects {
                self.report.subjects.push(subject.into_owned());
            }
        }
        self.report.records_forwarded += 1;
        Ok(true)
    }

    /// Counts the member just read, which no path names, and notes its drift path (`fp` as in
    /// [`Unknowns::note`]). `drift`: where key-order prediction remembered its occurrences
    /// go; otherwise, where they go is remembered with its key when the object stands for one
    /// drift path.
    fn note_unknown(&mut self, shapes: Shapes, open: &Open<'a>, fp: u64, drift: Option<u32>) {
        self.report.unknown_fields += 1;
        if let Some(entry) = drift {
            Unknowns::again(&mut self.report.unknown, entry, shapes);
            return;
        }
        let sc = &self.sc;
        let Some(name) = sc.current_key() else {
            return;
        };
        let entry = self.unknowns.note(
            &mut self.report.unknown,
            open.at,
            &name,
            fp,
            shapes,
            |path| sc.drift_path(path),
        );
        if let Some(entry) = entry {
            self.sc.orders.remember_drift(&open.keys, entry);
        }
    }

    #[inline(never)]
    fn array(&mut self, elements: NodeId) -> Result<(), Fail> {
        match self.sc.peek() {
            Some(b'[') => {}
            Some(b'n') => {
                self.sc.literal(b"null")?;
                self.out.extend_from_slice(b"null");
                self.kept(None);
                return Ok(());
            }
            other if !starts_value(other) => return Err(self.sc.unexpected("a JSON value")),
            other => {
                return Err(bad(format!(
                    "`{}` is {}, but the policy expects an array there",
                    self.sc.path(),
                    describe(other)
                )))
            }
        }
        self.sc.open(false)?;
        self.sc.pos += 1;
        self.out.push(b'[');
        self.sc.skip_ws();
        let mut any_kept = false;
        let depth = self
            .forwarded
            .then(|| self.report.forwarded.enter_element());
        if self.sc.peek() != Some(b']') {
            loop {
                // A dropped record takes its comma with it.
                let mark = self.out.len();
                if any_kept {
                    self.out.push(b',');
                }
                if self.walk(elements)? {
                    any_kept = true;
                } else {
                    self.out.truncate(mark);
                }
                if self.sc.compact_comma() {
                    self.sc.next_element();
                    continue;
                }
                self.sc.skip_ws();
                match self.sc.peek() {
                    Some(b',') => {
                        self.sc.pos += 1;
                        self.sc.skip_ws();
                        self.sc.next_element();
                    }
                    Some(b']') => break,
                    _ => return Err(self.sc.unexpected("`,` or `]`")),
                }
            }
        }
        if let Some(depth) = depth {
            self.report.forwarded.leave(depth);
        }
        self.sc.pos += 1;
        self.out.push(b']');
        self.sc.close();
        if !any_kept {
            self.kept(None); // `[]`, or every record dropped
        }
        Ok(())
    }
}
