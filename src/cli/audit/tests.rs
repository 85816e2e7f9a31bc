use super::bound;

#[test]
fn bounds_compare_as_ledger_times_up_to_the_last_year() {
    assert_eq!(
        bound("2026-11-29", false).unwrap(),
        "2026-11-29T00:00:00.000Z"
    );
    assert_eq!(
        bound("2026-11-29", true).unwrap(),
        "2026-11-29T23:59:59.999Z"
    );
    assert_eq!(
        bound("2026-11-29T10:00:00.314Z", true).unwrap(),
        "2026-11-29T10:00:00.314Z"
    );
    // The far future ends after every ledger time, never before all of them.
    for far in ["9999-12-31", "9999-12-31T23:59:59.999Z"] {
        let end = bound(far, true).unwrap();
        assert_eq!(end, "9999-12-31T23:59:59.999Z");
        assert!(end.len() == 24, "{end}");
    }
    assert!(bound("9999-12-31T23:00:00-05:00", false).is_err());
}
