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
