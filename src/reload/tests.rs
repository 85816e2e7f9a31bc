use super::key_line;

#[test]
fn key_line_finds_top_level_keys_only() {
    let text = "listen: 1\nadmin_listen: 2\nlimits: { a: 1 }\ntls:\n  cert: x\n";
    assert_eq!(key_line(text, "listen"), 1);
    assert_eq!(key_line(text, "admin_listen"), 2);
    assert_eq!(key_line(text, "tls"), 4);
    assert_eq!(key_line(text, "cert"), 1);
    assert_eq!(key_line(text, "optouts"), 1);
}
