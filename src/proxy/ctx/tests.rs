use super::*;

#[test]
fn request_ids_are_fresh_lowercase_hyphenated_uuids() {
    let (a, b) = (RequestId::new(), RequestId::new());
    for id in [&a, &b] {
        let parsed = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.hyphenated().to_string(), id.as_str());
        assert_eq!(id.to_string(), id.as_str());
    }
    assert_ne!(a.as_str(), b.as_str());
}
