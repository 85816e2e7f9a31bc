/*!
Field paths of the policy language: `a.b`, `a[*]`, `a.*`, a final `.**`, and `$` for the
body root. A path names JSON members after unescaping; a key that contains `.`, `[`, `]`
or `*` can never be named, so such a key is always removed.
*/
use std::fmt;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// `name`: the object member with exactly this (unescaped) name.
    Member(String),
    /// `*`: every member of an object.
    AnyMember,
    /// `[*]`: every element of an array.
    Elements,
}

/// A parsed field path. `subtree` is set by a final `.**`: everything beneath passes.
/// An empty `segments` with `subtree == false` is the root (`$`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    pub segments: Vec<Segment>,
    pub subtree: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field path {path:?}: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

impl FieldPath {
    /// The body root, `$`.
    pub fn root() -> Self {
        FieldPath {
            segments: Vec::new(),
            subtree: false,
        }
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty() && !self.subtree
    }

    /// Parses `a.b[*].c`, `[*].a`, `a.*`, `a.**`, `$`, and `$.a` / `$[*]` (a leading `$` is the root).
    pub fn parse(text: &str) -> Result<FieldPath, PathError> {
        let fail = |reason: &str| PathError {
            path: text.to_string(),
            reason: reason.to_string(),
        };
        let mut rest = text.trim();
        if rest != text {
            return Err(fail("leading or trailing whitespace"));
        }
        if rest.is_empty() {
            return Err(fail("empty path"));
        }
        if let Some(after) = rest.strip_prefix('$') {
            if after.is_empty() {
                return Ok(FieldPath::root());
            }
            rest = after.strip_prefix('.').unwrap_or(after);
            if !after.starts_with('.') && !after.starts_with('[') {
                return Err(fail("`$` must be followed by `.` or `[`"));
            }
        }
        let mut segments = Vec::new();
        let mut subtree = false;
        let mut chars = rest;
        let mut expect_member = true; // at the start or after `.`
        let mut first = true;
        while !chars.is_empty() {
            if subtree {
                return Err(fail("`**` must be the last segment"));
            }
            if let Some(after) = chars.strip_prefix("[*]") {
                if expect_member && !first {
                    return Err(fail("`.` must be followed by a member name, `*` or `**`"));
                }
                segments.push(Segment::Elements);
                chars = after;
                expect_member = false;
                first = false;
                continue;
            }
            if chars.starts_with('[') {
                return Err(fail("only `[*]` is supported inside brackets"));
            }
            if !expect_member {
                match chars.strip_prefix('.') {
                    Some(after) => {
                        chars = after;
                        expect_member = true;
                        if chars.is_empty() {
                            return Err(fail("path ends with `.`"));
                        }
                        continue;
                    }
                    None => return Err(fail("expected `.` or `[*]` between segments")),
                }
            }
            let end = chars.find(['.', '[']).unwrap_or(chars.len());
            let name = &chars[..end];
            match name {
                "" => return Err(fail("empty member name")),
                "**" => subtree = true,
                "*" => segments.push(Segment::AnyMember),
                _ if name.contains('*') || name.contains(']') => {
                    return Err(fail("`*` and `]` may only stand alone as a segment"))
                }
                _ => segments.push(Segment::Member(name.to_string())),
            }
            chars = &chars[end..];
            expect_member = false;
            first = false;
        }
        if subtree && segments.is_empty() {
            return Err(fail(
                "`**` alone would pass the whole body; list the members instead",
            ));
        }
        Ok(FieldPath { segments, subtree })
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str("$");
        }
        let mut first = true;
        for seg in &self.segments {
            match seg {
                Segment::Elements => f.write_str("[*]")?,
                Segment::Member(name) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?
                }
                Segment::AnyMember => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str("*")?
                }
            }
            first = false;
        }
        if self.subtree {
            f.write_str(".**")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
