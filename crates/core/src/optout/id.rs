/*!
The wire forms a customer id may take where opt-outs are honoured, and the one way ids are
looked up in the opt-out set.

Partners do not all read ids the way the gateway compares them: a database column of
integers takes `"0300"`, `"+300"` and `"300.0"` for customer 300, JavaScript rounds integers
beyond 2^53, many servers trim whitespace or stop at a control character, and a `;` or `,` in
a URL value splits it into several ids. So where an id is judged against opt-outs, any form
that a reader could take for a *different* id than the text the gateway compares is refused
instead of guessed at:

- control characters and surrounding whitespace ([`BadId::ControlCharacter`],
  [`BadId::SurroundingWhitespace`]), and invisible format characters such as a zero-width space
  or a soft hyphen, which many readers strip ([`BadId::Invisible`]);
- ids longer than an opt-out can be ([`BadId::TooLong`]): no opt-out could ever match them;
- number-like strings that are not a canonical integer: leading zeros, signs, fractions,
  exponents, hex, and digits that NFKC maps to ASCII digits ([`BadId::NonCanonicalNumber`]);
- text that Unicode NFKC normalisation changes (`ｃ-200`) ([`BadId::NotNfkc`]);
- JSON integers beyond ±(2^53−1) ([`BadId::UnsafeInteger`]; as strings they are fine);
- in URL values also `;`, `,`, `?`, `#`, `&` and percent escapes ([`BadId::Separator`]).

What is left is compared exactly, and also in lowercase and uppercase ([`is_opted_out`]), so
`C-200` is judged as `c-200` whichever case the opt-out was recorded in. An opt-out is only
recorded for an id that passes these rules ([`check_new_opt_out_id`]): one that fails them
could never match a request. Inside a record, a
second key that a case-insensitive reader takes for the subject member is found by
[`name_folds_onto`].
*/

use std::borrow::Cow;
use std::sync::LazyLock;

use unicode_normalization::UnicodeNormalization;

use super::{OptOutLookup, MAX_ID_LEN};

/// A number written with decimal digits of any script (`٣٠٠`, `३००`): Java's `Long.parseLong`
/// and Python's `int` read it as the ASCII integer.
static ANY_SCRIPT_NUMBER: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[+-]?\p{Nd}+$").expect("a valid pattern"));

/// Characters readers may drop as invisible: Unicode format characters (general category Cf:
/// zero-width space, soft hyphen, bidi marks) and the other default-ignorable code points
/// (combining grapheme joiner, variation selectors, Hangul fillers), which NFKC_Casefold and
/// IDNA mapping remove.
static FORMAT_CHARACTER: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"[\p{Cf}\p{Default_Ignorable_Code_Point}]").expect("a valid pattern")
});

/// Whether `text` holds an invisible format character ([`FORMAT_CHARACTER`]), which readers
/// that apply NFKC_Casefold or IDNA mapping drop.
pub(crate) fn has_invisible(text: &str) -> bool {
    FORMAT_CHARACTER.is_match(text)
}

/// `text` as readers that drop invisible format characters see it.
pub(crate) fn without_invisible(text: &str) -> Cow<'_, str> {
    FORMAT_CHARACTER.replace_all(text, "")
}

/// ASCII ids up to this length are re-cased on the stack by [`is_opted_out`].
pub const CASE_BUFFER: usize = 128;

/// The largest integer every JSON reader keeps exactly: 2^53 − 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value cannot be judged as a customer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadId {
    Empty,
    ControlCharacter,
    SurroundingWhitespace,
    NonCanonicalNumber,
    NotNfkc,
    UnsafeInteger,
    Separator,
    TooLong,
    Invisible,
}

impl BadId {
    /// What the value is, to follow "is" in a refusal message.
    pub fn what(self) -> &'static str {
        match self {
            BadId::Empty => "an empty string",
            BadId::ControlCharacter => "a string with a control character",
            BadId::SurroundingWhitespace => "a string with surrounding whitespace",
            BadId::NonCanonicalNumber => {
                "a number not in canonical integer form (leading zeros, a sign, a fraction, an exponent)"
            }
            BadId::NotNfkc => "text that Unicode NFKC normalisation changes",
            BadId::UnsafeInteger => {
                "an integer beyond ±(2^53−1), which JavaScript readers round (send it as a string)"
            }
            BadId::Separator => "a value with `;`, `,`, `?`, `#`, `&` or a percent escape, which partners may split into several ids or decode again into another",
            BadId::TooLong => "longer than an opt-out can be recorded for (256 bytes)",
            BadId::Invisible => {
                "a string with an invisible format character (a zero-width space, a soft hyphen), which readers may strip"
            }
        }
    }
}

impl std::fmt::Display for BadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what())
    }
}

impl std::error::Error for BadId {}

/// Checks a JSON string subject id (already unescaped).
pub fn check_string_id(id: &str) -> Result<(), BadId> {
    if id.is_ascii() && !id.is_empty() {
        check_ascii_id(id)
    } else {
        check_any_id(id)
    }
}

/// [`check_string_id`] for a non-empty ASCII id, byte by byte (one such id per record): NFKC
/// leaves ASCII as it is, the ASCII control characters are those below 0x20 and 0x7f, and
/// the only ASCII whitespace that is not one of them is the space.
fn check_ascii_id(id: &str) -> Result<(), BadId> {
    let bytes = id.as_bytes();
    if bytes.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(BadId::ControlCharacter);
    }
    if bytes.first() == Some(&b' ') || bytes.last() == Some(&b' ') {
        return Err(BadId::SurroundingWhitespace);
    }
    if denotes_integer(id) && !is_canonical_integer(id) {
        return Err(BadId::NonCanonicalNumber);
    }
    // Last, so that `TooLong` means "clean, only too long" (see `check_url_value`).
    if bytes.len() > MAX_ID_LEN {
        return Err(BadId::TooLong);
    }
    Ok(())
}

/// [`check_string_id`] for any id.
fn check_any_id(id: &str) -> Result<(), BadId> {
    if id.is_empty() {
        return Err(BadId::Empty);
    }
    if id.chars().any(char::is_control) {
        return Err(BadId::ControlCharacter);
    }
    if has_invisible(id) {
        return Err(BadId::Invisible);
    }
    if id.starts_with(char::is_whitespace) || id.ends_with(char::is_whitespace) {
        return Err(BadId::SurroundingWhitespace);
    }
    let normalised: Cow<'_, str> = if id.is_ascii() {
        Cow::Borrowed(id)
    } else {
        Cow::Owned(id.nfkc().collect())
    };
    let number = denotes_integer(&normalised) || ANY_SCRIPT_NUMBER.is_match(id);
    if number && !is_canonical_integer(id) {
        return Err(BadId::NonCanonicalNumber);
    }
    if normalised != id {
        return Err(BadId::NotNfkc);
    }
    if id.len() > MAX_ID_LEN {
        return Err(BadId::TooLong);
    }
    Ok(())
}

/// Checks a JSON integer literal used as a subject id (no fraction or exponent; the scanner
/// refuses those before). `-0` and magnitudes beyond [`MAX_SAFE_INTEGER`] are refused.
pub fn check_integer_literal(literal: &str) -> Result<(), BadId> {
    if !is_canonical_integer(literal) {
        return Err(BadId::NonCanonicalNumber);
    }
    let digits = literal.trim_start_matches('-');
    let safe = digits.len() <= 16 && digits.parse::<u64>().is_ok_and(|n| n <= MAX_SAFE_INTEGER);
    if !safe {
        return Err(BadId::UnsafeInteger);
    }
    Ok(())
}

/// Checks an id an opt-out is about to be recorded for (admin API, bulk import): the rules a
/// request's subject id must pass ([`check_string_id`]), since an opt-out for an id no
/// request can carry would never take effect. Ids stored before these rules existed still load
/// (the store checks only `validate_customer_id`) and can still be deleted.
pub fn check_new_opt_out_id(id: &str) -> Result<(), BadId> {
    check_string_id(id)
}

/// Checks a decoded path parameter or query value on an opt-out-honouring partner: the rules
/// of [`check_string_id`] plus no `;`, `,`, `?`, `#`, `&` and no percent escape left after
/// decoding (a partner that decodes twice reads `c-200%3F` as `c-200` and an empty query, and
/// `%2563-200` as `c-200`). [`BadId::TooLong`] comes only for a value that
/// passes every other rule, so a caller may compare such a value instead of refusing it.
pub fn check_url_value(value: &str) -> Result<(), BadId> {
    if has_percent_escape(value) || value.contains([';', ',', '?', '#', '&']) {
        return Err(BadId::Separator);
    }
    check_string_id(value)
}

/// Does `text` hold a percent escape (`%` and two hex digits), which a second decoding would
/// turn into another character?
pub(crate) fn has_percent_escape(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// The canonical integers an ASCII text reads as when a lenient number reader takes it for one
/// (`0300`, `+300`, `300.0`, `3e2`, `0x12c` as `300`; `-0` as `0`; a leading-zero `0454` also
/// as the octal Go's and C's readers take it for, `300`). Empty when it reads as none, or as one
/// too large for a float to tell.
pub fn integer_readings(text: &str) -> Vec<String> {
    if !text.is_ascii() || !denotes_integer(text) {
        return Vec::new();
    }
    let negative = text.starts_with('-');
    let unsigned = text
        .strip_prefix(['+', '-'])
        .unwrap_or(text)
        .replace('_', "");
    let lower = unsigned.to_ascii_lowercase();
    let radix = [("0x", 16), ("0o", 8), ("0b", 2)]
        .into_iter()
        .find_map(|(prefix, radix)| lower.strip_prefix(prefix).map(|rest| (rest, radix)));
    let mut magnitudes: Vec<String> = Vec::new();
    match radix {
        Some((rest, radix)) => magnitudes.extend(
            u128::from_str_radix(rest, radix)
                .ok()
                .map(|m| m.to_string()),
        ),
        None => {
            magnitudes.extend(exact_decimal(&lower).or_else(|| {
                let value = lower.parse::<f64>().ok()?;
                // Past 2^53 a float no longer tells integers apart.
                let safe = value.is_finite() && value.abs() <= 9_007_199_254_740_991.0;
                (safe && value.fract() == 0.0).then(|| (value.abs() as u128).to_string())
            }));
            let octal = lower.len() > 1 && lower.starts_with('0');
            if octal && lower.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                magnitudes.extend(u128::from_str_radix(&lower, 8).ok().map(|m| m.to_string()));
            }
        }
    }
    magnitudes.dedup();
    magnitudes
        .into_iter()
        .map(|m| {
            if negative && m != "0" {
                format!("-{m}")
            } else {
                m
            }
        })
        .collect()
}

/// The digits of an unsigned decimal integer written with leading zeros or a fraction of zeros
/// (`0300`, `300.00`, `09007199254740993`), exactly, whatever its size: readers that parse
/// integers exactly (Go's `Atoi`, Python's `int`, `BigDecimal`) take it for that integer.
fn exact_decimal(unsigned: &str) -> Option<String> {
    let (int, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let plain = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b == b'0');
    plain.then(|| match int.trim_start_matches('0') {
        "" => "0".to_string(),
        digits => digits.to_string(),
    })
}

/// The number-like runs of a text (`3e+2` in `a 3e+2`, `0x12c` in `[0x12c]`), signs and
/// exponents included, which splitting the text at its punctuation would cut apart; not a run
/// that goes on from a letter or digit (`-200` of `c-200`).
pub fn number_runs(text: &str) -> impl Iterator<Item = &str> {
    static RUN: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r"[+-]?(?:0[xXoObB][0-9a-fA-F_]+|[0-9][0-9_]*\.?[0-9_]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)",
        )
        .expect("a valid pattern")
    });
    RUN.find_iter(text)
        .filter(|m| !text[..m.start()].ends_with(char::is_alphanumeric))
        .map(|m| m.as_str())
}

/// `0` or `-?[1-9][0-9]*`, not `-0`.
pub fn is_canonical_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let well_formed = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    well_formed && text != "-0"
}

/// Would a lenient number reader take this for an integer? A sign, digits with an optional
/// fraction (`300.`, `300.0`, `.5e1`), an optional exponent, or a `0x`/`0o`/`0b` literal —
/// whose value is a whole number (`12.5` is no integer id in any reading).
#[inline]
fn denotes_integer(text: &str) -> bool {
    // Every reading starts with a sign, `_`, a digit or a `.`: the usual id (`c-1000`) is
    // settled by its first byte.
    may_start_a_number(text.as_bytes().first()) && reads_as_integer(text)
}

fn may_start_a_number(first: Option<&u8>) -> bool {
    matches!(first, Some(b'0'..=b'9' | b'.' | b'+' | b'-' | b'_'))
}

/// [`denotes_integer`] without the first-byte shortcut.
fn reads_as_integer(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    // Every reading below starts, after the sign and any `_`, with a digit or a `.`: most ids
    // (`c-1000`, `ana@example.com`) are told apart here, without allocating.
    let lead = unsigned.trim_start_matches('_');
    if !lead.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return false;
    }
    let unsigned = unsigned.replace('_', "");
    let lower = unsigned.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            return !rest.is_empty() && rest.chars().all(|c| c.is_digit(radix));
        }
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_ok = (!int.is_empty() || !frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    // Whole, or too long for a float to tell: refuse rather than guess.
    digits_ok
        && exponent_ok
        && lower.parse::<f64>().map_or(true, |v| {
            !v.is_finite() || v.fract() == 0.0 || lower.len() > 15
        })
}

/// [`name_folds_onto`] on text.
#[cfg(test)]
pub fn folds_to_subject(key: &str, subject: &str) -> bool {
    name_folds_onto(key.as_bytes(), subject.as_bytes())
}

/// Is the member name `key` another spelling of the member name `subject` (the subject's, or a
/// transformed sibling's) for a lenient JSON reader (Go's `encoding/json`, Jackson or .NET in
/// case-insensitive mode, or one that cleans names up): equal under Unicode case folding and
/// NFKC (`Customer_Id`, `cuſtomer_id`), or once a dotted capital `İ` and a dotless `ı` are read
/// as `i`, as Java's `equalsIgnoreCase` and Jackson in a Turkish locale read them (`emaİl`,
/// `customer_ıd`), or once read as [`as_readers_clean`] reads names (`customer\u00ad_id`,
/// `"customer_id "`, `customer_id\u0000x`), but not the same key? Names are as they stand in
/// the body (already checked to be UTF-8); the usual ASCII name is settled without a text
/// conversion.
pub fn name_folds_onto(key: &[u8], subject: &[u8]) -> bool {
    if key == subject {
        return false;
    }
    let (Ok(key), Ok(subject)) = (std::str::from_utf8(key), std::str::from_utf8(subject)) else {
        return false;
    };
    let subject = as_readers_clean(subject, Controls::CutAtNul);
    [Controls::CutAtNul, Controls::Deleted]
        .into_iter()
        .any(|controls| folds_equal(&as_readers_clean(key, controls), &subject))
}

/// Equal for a case-insensitive reader: ASCII case, else Unicode case folding and NFKC, also
/// with `İ` and `ı` read as `i`.
fn folds_equal(key: &str, subject: &str) -> bool {
    if key.is_ascii() && subject.is_ascii() {
        return key.eq_ignore_ascii_case(subject);
    }
    const TURKISH_I: [char; 2] = ['\u{130}', '\u{131}'];
    let dotless = |s: &str| s.replace(TURKISH_I, "i");
    caseless::compatibility_caseless_match_str(key, subject)
        || ((key.contains(TURKISH_I) || subject.contains(TURKISH_I))
            && caseless::compatibility_caseless_match_str(&dotless(key), &dotless(subject)))
}

/// What readers that clean member names up do with control characters inside one.
#[derive(Clone, Copy)]
enum Controls {
    /// Cut the name at its first NUL (C strings).
    CutAtNul,
    /// Delete every control character.
    Deleted,
}

/// A member name as readers that clean names up see it: control characters handled as
/// `controls` says, invisible format characters dropped ([`without_invisible`], as
/// NFKC_Casefold does), blanks and control characters trimmed from both ends (Java's `trim`
/// takes everything up to U+0020). Borrowed, for the usual plain name, with one pass over it.
fn as_readers_clean(name: &str, controls: Controls) -> Cow<'_, str> {
    let trim = |s: &str| {
        s.trim_matches(|c: char| c.is_whitespace() || c.is_control())
            .to_string()
    };
    let name = match controls {
        Controls::CutAtNul => name.split('\0').next().unwrap_or_default(),
        Controls::Deleted if name.contains(|c: char| c.is_control()) => {
            let kept: String = name.chars().filter(|c| !c.is_control()).collect();
            return Cow::Owned(trim(&without_invisible(&kept)));
        }
        Controls::Deleted => name,
    };
    let plain = |c: char| !(c.is_whitespace() || c.is_control());
    if name.is_ascii() && name.starts_with(plain) && name.ends_with(plain) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(trim(&without_invisible(name)))
}

/// The Unicode case folds of `id` and of its uppercase: beyond ASCII, the forms in which other
/// casings of one id meet (`ΣΑΣ` lowercases to `σας` but folds to `σασ`; `Ilık` uppercases to
/// `ILIK`, which folds to `ilik`, as `ılık`'s uppercase does). [`is_opted_out`] looks them up,
/// and the opt-out set indexes a stored id under them.
pub fn case_folds(id: &str) -> Vec<String> {
    let mut folds = vec![
        caseless::default_case_fold_str(id),
        caseless::default_case_fold_str(&id.to_uppercase()),
    ];
    // `İ` (U+0130) folds to `i̇` (with a combining dot), but per-character lowercasing, which
    // many readers use (Java's and Go's), makes it `i`: `TİKİ` is `tiki` there.
    if id.contains('\u{130}') {
        let dotless = id.replace('\u{130}', "i");
        folds.push(caseless::default_case_fold_str(&dotless));
        // An opt-out written all in capitals (`TIKI`) is not indexed under other forms.
        folds.push(dotless.to_uppercase());
    }
    folds
}

/// Is `id` opted out, compared exactly, in its lowercase and uppercase forms and (beyond ASCII)
/// its [`case_folds`]? The one lookup every opt-out check goes through; the set indexes ids
/// that none of these would reach from another casing (see `OptOutSet`).
///
/// Allocation-free for the usual ids: one without cased letters (digits, `c-200`'s separators)
/// has no other case to look up, and an ASCII id of up to [`CASE_BUFFER`] bytes is re-cased
/// on the stack.
pub fn is_opted_out(lookup: &dyn OptOutLookup, id: &str) -> bool {
    if lookup.is_opted_out(id) {
        return true;
    }
    if id.is_ascii() {
        // An id with an uppercase letter has a lowercase form to look up, one with a lowercase
        // letter an uppercase form; an id without letters has no other case.
        let (has_lower, has_upper) = id.bytes().fold((false, false), |(lower, upper), b| {
            (
                lower || b.is_ascii_lowercase(),
                upper || b.is_ascii_uppercase(),
            )
        });
        if id.len() <= CASE_BUFFER {
            let mut buffer = [0u8; CASE_BUFFER];
            for (upper, differs) in [(false, has_upper), (true, has_lower)] {
                if !differs {
                    continue;
                }
                let out = &mut buffer[..id.len()];
                out.copy_from_slice(id.as_bytes());
                if upper {
                    out.make_ascii_uppercase();
                } else {
                    out.make_ascii_lowercase();
                }
                if let Ok(text) = std::str::from_utf8(out) {
                    if lookup.is_opted_out(text) {
                        return true;
                    }
                }
            }
            return false;
        }
        if !has_lower && !has_upper {
            return false;
        }
    }
    let lower = id.to_lowercase();
    if lower != id && lookup.is_opted_out(&lower) {
        return true;
    }
    let upper = id.to_uppercase();
    if upper != id && lookup.is_opted_out(&upper) {
        return true;
    }
    let folds = case_folds(id);
    folds.iter().enumerate().any(|(i, fold)| {
        *fold != id && *fold != lower && !folds[..i].contains(fold) && lookup.is_opted_out(fold)
    })
}

#[cfg(test)]
mod tests;
