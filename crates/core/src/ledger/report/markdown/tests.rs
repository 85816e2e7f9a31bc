#[test]
fn caller_text_is_inert_in_a_cell() {
    assert_eq!(
        super::cell("<script>a|b\n&</script>"),
        "&lt;script&gt;a\\|b &amp;&lt;\\/script&gt;"
    );
    assert_eq!(
        super::cell("![x](https://e.example/t)"),
        "\\!\\[x\\]\\(https\\:\\/\\/e\\.example\\/t\\)"
    );
}

/// Bare URLs and `www.` hosts, which GitHub-flavoured Markdown turns into links, and
/// emphasis stay text.
#[test]
fn bare_urls_and_emphasis_are_no_markup() {
    let text = super::cell("see http://e.example or www.e.example *now* _x_ a@b.example");
    assert!(!text.contains("://") && !text.contains("www."), "{text}");
    assert!(!text.contains(" *now*") && !text.contains("_x_"), "{text}");
    assert!(!text.contains("a@b"), "{text}");
}
