/*!
Data categories: the fideslang taxonomy's data category names (shipped as data in
`crates/core/data/`, see its `NOTICE.md`), lookups, and the nearest known names for a
misspelt one. Routes map their allow and transform paths to these names with `categories:`.
*/

/// The taxonomy file: `fides_key<TAB>name` per line, `#` comments.
const TAXONOMY: &str = include_str!("../../data/fideslang-data-categories.tsv");

/// The category counted for a forwarded field whose path has none.
pub const UNCATEGORIZED: &str = "uncategorized";

/// Every data category key of the taxonomy, in file order (parents before children).
pub fn all() -> impl Iterator<Item = &'static str> {
    TAXONOMY
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split('\t').next())
}

/// The display name of a category key (`user.name` → `Name`).
pub fn display_name(key: &str) -> Option<&'static str> {
    TAXONOMY
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.split_once('\t')
                .filter(|(k, _)| *k == key)
                .map(|(_, n)| n)
        })
}

/// True when `name` is a data category key of the taxonomy.
pub fn is_known(name: &str) -> bool {
    all().any(|k| k == name)
}

/// Up to `n` known names closest to `name` (edit distance; a name without dots is also
/// compared with each key's last segment, so `email` finds `user.contact.email`), best first.
pub fn nearest(name: &str, n: usize) -> Vec<&'static str> {
    let mut scored: Vec<(usize, &'static str)> = all()
        .map(|k| {
            let whole = strsim::levenshtein(name, k);
            let tail = match name.contains('.') {
                true => usize::MAX,
                false => strsim::levenshtein(name, k.rsplit('.').next().unwrap_or(k)),
            };
            (whole.min(tail), k)
        })
        .collect();
    scored.sort();
    scored.into_iter().take(n).map(|(_, k)| k).collect()
}

#[cfg(test)]
mod tests;
