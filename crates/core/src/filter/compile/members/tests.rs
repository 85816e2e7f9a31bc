use super::*;

#[test]
fn same_key_is_equality() {
    let keys: Vec<Vec<u8>> = (0..=20)
        .flat_map(|n| {
            let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let mut variants = vec![base.clone()];
            for at in 0..n {
                let mut v = base.clone();
                v[at] ^= 0x20;
                variants.push(v);
            }
            variants
        })
        .collect();
    for a in &keys {
        for b in &keys {
            assert_eq!(same_key(a, b), a == b, "{a:?} {b:?}");
        }
    }
}
