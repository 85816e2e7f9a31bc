//! The verified-token cache: hits skip nothing that depends on time or on the exact bytes.
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::callers::{CallerKeys, CallerVerifier};

const ED: &[u8] = include_bytes!("../testdata/ed25519.pem");
const ED_PUB: &[u8] = include_bytes!("../testdata/ed25519.pub.pem");
const ED_OTHER: &[u8] = include_bytes!("../testdata/ed25519-other.pem");
const ISS: &str = "https://auth.ohsoft.example";
const AUD: &str = "partner-gateway";
const NOW: u64 = 1_800_000_000;

fn verifier() -> CallerVerifier {
    let mut keys = CallerKeys::new();
    keys.add_pem(None, ED_PUB).unwrap();
    CallerVerifier::new(keys, ISS, AUD, Some("groups".into())).unwrap()
}

fn token_with(key: &[u8], claims: &Value) -> String {
    let header = Header::new(Algorithm::EdDSA);
    let key = EncodingKey::from_ed_pem(key).unwrap();
    format!(
        "Bearer {}",
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    )
}

fn token(claims: &Value) -> String {
    token_with(ED, claims)
}

fn claims(exp: u64) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "orders-service", "exp": exp, "groups": ["shipping"]})
}

#[test]
fn a_hit_gives_the_same_caller_as_a_full_check() {
    let v = verifier();
    let t = token(&claims(NOW + 120));
    let first = v.verify_cached(Some(&t), NOW).unwrap();
    assert_eq!(v.cache().len(), 1);
    let second = v.verify_cached(Some(&t), NOW + 1).unwrap();
    assert_eq!(*first, *second);
    assert_eq!(*second, v.verify(Some(&t), NOW + 1).unwrap());
    assert_eq!(second.groups, ["shipping"]);
    assert_eq!(v.cache().len(), 1);
}

#[test]
fn a_hit_still_enforces_exp() {
    let v = verifier();
    let exp = NOW + 60;
    let t = token(&claims(exp));
    v.verify_cached(Some(&t), NOW).unwrap();
    // Up to the second before `exp`: still accepted, as a full check would; at `exp` refused
    // by both (no leeway on `exp`).
    assert!(v.verify_cached(Some(&t), exp - 1).is_ok());
    assert_eq!(
        v.verify_cached(Some(&t), exp).unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(v.verify(Some(&t), exp).unwrap_err(), AuthError::Expired);
    // And again later: an expired entry never comes back to life.
    assert_eq!(
        v.verify_cached(Some(&t), exp + 10_000).unwrap_err(),
        AuthError::Expired
    );
}

#[test]
fn a_hit_still_enforces_nbf() {
    let v = verifier();
    let mut c = claims(NOW + 600);
    c["nbf"] = json!(NOW);
    let t = token(&c);
    v.verify_cached(Some(&t), NOW).unwrap();
    // The clock went back (or the entry is asked about earlier): nbf is checked on the hit.
    assert_eq!(
        v.verify_cached(Some(&t), NOW - crate::jose::LEEWAY_SECS - 1)
            .unwrap_err(),
        AuthError::NotYetValid
    );
}

#[test]
fn only_the_exact_bytes_hit() {
    let v = verifier();
    let t = token(&claims(NOW + 120));
    v.verify_cached(Some(&t), NOW).unwrap();
    // Same claims, signature bytes tampered: not a hit, and refused.
    let mut tampered = t.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(v.verify_cached(Some(&tampered), NOW).is_err());
    // Signed by a key the verifier does not have.
    let foreign = token_with(ED_OTHER, &claims(NOW + 120));
    assert_eq!(
        v.verify_cached(Some(&foreign), NOW).unwrap_err(),
        AuthError::BadSignature
    );
    assert_eq!(v.cache().len(), 1, "refusals are never remembered");
}

#[test]
fn refusals_are_not_remembered() {
    let v = verifier();
    let t = token(&claims(NOW + 120));
    // Not valid yet at this time (exp fine, nbf in the future).
    let mut c = claims(NOW + 600);
    c["nbf"] = json!(NOW + 300);
    let early = token(&c);
    assert_eq!(
        v.verify_cached(Some(&early), NOW).unwrap_err(),
        AuthError::NotYetValid
    );
    assert!(v.cache().is_empty());
    assert!(v.verify_cached(Some(&early), NOW + 300).is_ok());
    assert!(v.verify_cached(Some(&t), NOW).is_ok());
    assert_eq!(v.cache().len(), 2);
}

#[test]
fn a_new_verifier_starts_empty() {
    // A policy reload builds a new verifier: new keys never meet old entries.
    let v = verifier();
    let t = token(&claims(NOW + 120));
    v.verify_cached(Some(&t), NOW).unwrap();
    assert!(verifier().cache().is_empty());
}

fn caller(sub: &str, groups: &[&str]) -> Arc<Caller> {
    Arc::new(Caller {
        sub: sub.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    })
}

#[test]
fn the_cache_stays_within_its_bound() {
    let cache = TokenCache::new(3);
    let caller = caller("a", &[]);
    for i in 0..10u64 {
        cache.insert(&format!("t{i}"), caller.clone(), NOW + 100, None, NOW);
        assert!(cache.len() <= 3);
    }
    // Expired entries go first when the cache is full.
    let cache = TokenCache::new(2);
    cache.insert("old", caller.clone(), NOW, None, NOW);
    cache.insert("live", caller.clone(), NOW + 1000, None, NOW);
    cache.insert("new", caller.clone(), NOW + 1000, None, NOW + 500);
    assert!(cache.get("old", NOW + 500).is_none());
    assert!(cache.get("live", NOW + 500).is_some());
    assert!(cache.get("new", NOW + 500).is_some());
    // Capacity 0: nothing is remembered.
    let off = TokenCache::new(0);
    off.insert("t", caller, NOW + 100, None, NOW);
    assert!(off.is_empty());
}

#[test]
fn new_tokens_are_still_cached_after_a_flood_and_the_ones_in_use_stay() {
    let cache = TokenCache::new(64);
    let caller = caller("a", &[]);
    cache.insert("in-use", caller.clone(), NOW + 10_000, None, NOW);
    for i in 0..10_000u64 {
        cache.insert(
            &format!("flood-{i}"),
            caller.clone(),
            NOW + 10_000,
            None,
            NOW,
        );
        if i % 16 == 0 {
            assert!(cache.get("in-use", NOW).is_some(), "a token in use is kept");
        }
        assert!(cache.len() <= 64);
    }
    // Every new token after the flood is remembered, however long the flood was.
    for i in 0..1_000u64 {
        let token = format!("after-{i}");
        cache.insert(&token, caller.clone(), NOW + 10_000, None, NOW);
        assert!(cache.get(&token, NOW).is_some(), "{token}");
    }
}

#[test]
fn the_cache_is_bounded_in_bytes_too() {
    let max = 64 * 1024;
    let cache = TokenCache::with_max_bytes(4096, max);
    let groups: Vec<String> = (0..150).map(|i| format!("group-{i:04}")).collect();
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let big = caller("a", &groups);
    for i in 0..1_000u64 {
        let token = format!("{i:08}{}", "x".repeat(15_000));
        cache.insert(&token, big.clone(), NOW + 100, None, NOW);
        assert!(cache.bytes() <= max, "{} bytes", cache.bytes());
        assert!(cache.get(&token, NOW).is_some(), "the newest fits");
    }
    assert!(cache.len() <= 4);
    // An entry larger than the whole budget is never stored (it would evict everything).
    let huge = "y".repeat(max + 1);
    cache.insert(&huge, big.clone(), NOW + 100, None, NOW);
    assert!(cache.get(&huge, NOW).is_none());
    assert!(cache.bytes() <= max);
}

#[test]
fn expired_entries_are_dropped_when_found_and_before_room_is_made() {
    let cache = TokenCache::new(8);
    let caller = caller("a", &[]);
    cache.insert("short", caller.clone(), NOW + 10, None, NOW);
    cache.insert("long", caller.clone(), NOW + 10_000, None, NOW);
    let bytes = cache.bytes();
    // A hit that finds an entry expired drops it (its memory too).
    assert_eq!(
        cache.get("short", NOW + 10).unwrap().unwrap_err(),
        AuthError::Expired
    );
    assert!(cache.get("short", NOW + 10).is_none());
    assert!(cache.bytes() < bytes);
    // Expired entries at the cold end go on the next insert, though there is room.
    cache.insert("soon", caller.clone(), NOW + 10, None, NOW);
    cache.get("long", NOW);
    cache.insert("later", caller.clone(), NOW + 10_000, None, NOW + 10);
    assert_eq!(cache.len(), 2);
    // The same token again replaces its entry without counting it twice.
    let bytes = cache.bytes();
    cache.insert("later", caller, NOW + 20_000, None, NOW);
    assert_eq!(cache.bytes(), bytes);
    assert_eq!(cache.len(), 2);
}
