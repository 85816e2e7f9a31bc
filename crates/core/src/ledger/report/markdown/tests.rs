#[test]
fn policy_text_is_inert_in_a_cell() {
    assert_eq!(
        super::cell("<script>a|b\n&</script>"),
        "&lt;script&gt;a\\|b &amp;&lt;/script&gt;"
    );
    assert_eq!(
        super::cell("![x](https://e.example/t)"),
        "!\\[x\\](https://e.example/t)"
    );
}

/// Caller text goes in a code span, whose fence no backtick inside can close.
#[test]
fn caller_text_is_a_code_span() {
    assert_eq!(super::code("a@evil.example"), "`a@evil.example`");
    assert_eq!(super::code("x`y``z"), "```x`y``z```");
    assert_eq!(super::code("`x"), "`` `x ``");
    assert_eq!(super::code("a|b\nc"), "`a|b c`");
    assert_eq!(super::code(""), "`  `");
}
