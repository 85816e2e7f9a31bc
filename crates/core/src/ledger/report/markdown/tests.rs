#[test]
fn caller_text_is_inert_in_a_cell() {
    assert_eq!(
        super::cell("<script>a|b\n&</script>"),
        "&lt;script&gt;a\\|b &amp;&lt;/script&gt;"
    );
    assert_eq!(
        super::cell("![x](https://e.example/t)"),
        "!\\[x\\](https://e.example/t)"
    );
}
