//! A small, obviously-correct reference filter for differential fuzzing and property tests.
//!
//! It works on a parsed document (serde_json, with a duplicate-key check) and applies the
//! policy path by path, exactly as the policy reference describes it: a member passes when a
//! path names it (by name or `*`), a path ending in `.**` passes the subtree whole (less the keys no path can name), a path
//! ending elsewhere passes a scalar only, a transform replaces a string or number (`null`
//! stays `null`, anything else is a refusal), an explicit `remove` wins over everything, and a
//! value whose shape does not fit what the paths expect is a refusal, as is a member passed
//! by `*` that case-insensitive readers take for a member a path transforms or removes
//! something of. It covers `mask`,
//! `null` and `remove` (the transforms that do not depend on a number's literal text) and no
//! records or opt-outs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// What a path ending at a position says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Subtree,
    Mask,
    Null,
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Member(String),
    Any,
    Elements,
}

/// One policy path: segments plus what happens where it ends.
#[derive(Debug, Clone)]
pub struct Rule {
    pub segs: Vec<Seg>,
    pub action: Action,
}

impl Rule {
    /// The path in policy syntax (`a.b[*].*`, with `.**` for subtrees).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for seg in &self.segs {
            match seg {
                Seg::Member(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Seg::Any => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push('*');
                }
                Seg::Elements => out.push_str("[*]"),
            }
        }
        if self.action == Action::Subtree {
            out.push_str(".**");
        }
        out
    }
}

/// A parsed body, or why it is refused.
pub fn parse(body: &[u8], max_depth: usize) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|_| "invalid UTF-8".to_string())?;
    if text.starts_with('\u{feff}') {
        return Err("BOM".into());
    }
    let strict: Strict = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if depth(&strict.0) > max_depth {
        return Err("too deep".into());
    }
    Ok(strict.0)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Applies `rules` to `value`: the filtered document, or `Err` for a refusal.
pub fn apply(rules: &[Rule], value: &Value) -> Result<Value, String> {
    let live: Vec<(&[Seg], Action)> = rules.iter().map(|r| (&r.segs[..], r.action)).collect();
    match at(&live, value, "$")? {
        Some(v) => Ok(v),
        None => Err("the root is removed".into()),
    }
}

/// `rules`: the remaining segments of every path that reached this position.
/// `Ok(None)`: the value is removed.
fn at(rules: &[(&[Seg], Action)], value: &Value, here: &str) -> Result<Option<Value>, String> {
    // Only `remove` paths lead here: nothing passes, and no shape is imposed.
    if rules.iter().all(|(_, a)| *a == Action::Remove) {
        return Ok(None);
    }
    let ending: Vec<Action> = rules
        .iter()
        .filter(|(segs, _)| segs.is_empty())
        .map(|(_, a)| *a)
        .collect();
    if ending.contains(&Action::Remove) {
        return Ok(None);
    }
    if ending.contains(&Action::Subtree) {
        return Ok(Some(strip_unnameable(value)));
    }
    let transform = ending
        .iter()
        .find(|a| matches!(a, Action::Mask | Action::Null));
    if let Some(t) = transform {
        return match value {
            Value::Null => Ok(Some(Value::Null)),
            Value::String(_) | Value::Number(_) => Ok(Some(match t {
                Action::Mask => Value::String("***".into()),
                _ => Value::Null,
            })),
            _ => Err(format!(
                "{here}: a transform met an object, array or boolean"
            )),
        };
    }
    if ending.contains(&Action::Allow) {
        return match value {
            Value::Object(_) | Value::Array(_) => Err(format!("{here}: not a scalar")),
            v => Ok(Some(v.clone())),
        };
    }
    let continuing: Vec<(&Seg, &[Seg], Action)> = rules
        .iter()
        .filter_map(|(segs, a)| segs.split_first().map(|(first, rest)| (first, rest, *a)))
        .collect();
    if continuing.is_empty() {
        return Ok(None);
    }
    let wants_array = continuing.iter().any(|(s, _, _)| **s == Seg::Elements);
    match value {
        Value::Null => Ok(Some(Value::Null)),
        Value::Array(items) if wants_array => {
            let inner: Vec<(&[Seg], Action)> = continuing
                .iter()
                .filter(|(s, _, _)| **s == Seg::Elements)
                .map(|(_, rest, a)| (*rest, *a))
                .collect();
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match at(&inner, item, &format!("{here}[{i}]"))? {
                    Some(v) => out.push(v),
                    None => return Err(format!("{here}[{i}]: an element was removed")),
                }
            }
            Ok(Some(Value::Array(out)))
        }
        Value::Object(members) if !wants_array => {
            // Names a path through which transforms or removes something.
            let guarded: Vec<&str> = continuing
                .iter()
                .filter(|(_, _, a)| matches!(a, Action::Mask | Action::Null | Action::Remove))
                .filter_map(|(s, _, _)| match s {
                    Seg::Member(name) => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            let mut out = serde_json::Map::new();
            for (key, member) in members {
                let named = continuing
                    .iter()
                    .any(|(s, _, _)| matches!(s, Seg::Member(name) if name == key));
                let syntax = key.contains(['.', '[', ']', '*']);
                let inner: Vec<(&[Seg], Action)> = continuing
                    .iter()
                    .filter(|(s, _, _)| match s {
                        Seg::Member(name) => name == key,
                        Seg::Any => !syntax,
                        Seg::Elements => false,
                    })
                    .map(|(_, rest, a)| (*rest, *a))
                    .collect();
                if inner.is_empty() {
                    continue;
                }
                if let Some(v) = at(&inner, member, &format!("{here}.{key}"))? {
                    // As Java's `equalsIgnoreCase` reads them, `İ` and `ı` are `i` too.
                    let dotless = |s: &str| s.replace(['\u{130}', '\u{131}'], "i");
                    let folds = |name: &&str| {
                        let name = &cleaned(name)[0];
                        *name != *key
                            && cleaned(key).iter().any(|key| {
                                caseless::compatibility_caseless_match_str(key, name)
                                    || caseless::compatibility_caseless_match_str(
                                        &dotless(key),
                                        &dotless(name),
                                    )
                            })
                    };
                    if !named && guarded.iter().any(folds) {
                        return Err(format!(
                            "{here}.{key}: another spelling of a guarded member"
                        ));
                    }
                    out.insert(key.clone(), v);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        _ => Err(format!("{here}: the wrong shape")),
    }
}

/// A subtree as it passes whole: keys no path can name (`.`, `[`, `]`, `*`) are removed at any
/// depth, everything else is kept.
pub fn strip_unnameable(value: &Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .iter()
                .filter(|(k, _)| !k.contains(['.', '[', ']', '*']))
                .map(|(k, v)| (k.clone(), strip_unnameable(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_unnameable).collect()),
        v => v.clone(),
    }
}

/// A JSON document whose objects never repeat a key.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(key, v).is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(out.into_iter().collect()))
    }
}

/// Invisible format characters, which readers that clean names up drop.
static INVISIBLE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"[\p{Cf}\p{Default_Ignorable_Code_Point}]").unwrap());

/// A member name as readers that clean names up read it: cut at a NUL, or with every control
/// character deleted; then without invisible format characters and trimmed of blanks and
/// control characters.
fn cleaned(name: &str) -> [String; 2] {
    let clean = |s: &str| {
        INVISIBLE
            .replace_all(s, "")
            .trim_matches(|c: char| c.is_whitespace() || c.is_control())
            .to_string()
    };
    let deleted: String = name.chars().filter(|c| !c.is_control()).collect();
    [
        clean(name.split('\0').next().unwrap_or("")),
        clean(&deleted),
    ]
}
