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
mod tests {
    use super::*;

    #[test]
    fn taxonomy_has_the_known_keys() {
        assert!(all().count() > 80);
        for key in [
            "user.name",
            "user.contact.address",
            "user.financial.credit_card",
            "user.contact.email",
            "system.operations",
        ] {
            assert!(is_known(key), "{key}");
        }
        assert!(!is_known("user.nam"));
        assert!(!is_known(""));
        assert_eq!(display_name("user.name"), Some("Name"));
    }

    #[test]
    fn nearest_names_for_misspellings() {
        assert_eq!(nearest("user.nam", 1), vec!["user.name"]);
        assert!(nearest("user.contact.adress", 3).contains(&"user.contact.address"));
        assert!(nearest("email", 3).contains(&"user.contact.email"));
        assert_eq!(nearest("x", 3).len(), 3);
    }
}
