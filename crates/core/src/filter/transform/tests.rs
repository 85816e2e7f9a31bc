use super::*;

/// `last4` as first written: count every digit, then take the last four.
fn last4_reference(text: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = text.iter().copied().filter(u8::is_ascii_digit).collect();
    let mut out = b"\"***".to_vec();
    if digits.len() >= LAST4_MIN_DIGITS {
        out.extend_from_slice(&digits[digits.len() - 4..]);
    }
    out.push(b'"');
    out
}

/// What `last4` writes for `text`.
fn last4_of(text: &str) -> String {
    let mut out = Vec::new();
    last4(text.as_bytes(), &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn last4_matches_the_reference_on_every_short_text() {
    // Every text of up to 11 bytes over a digit, a letter, a space and a multi-byte letter's
    // first byte, with digits numbered so that their order shows.
    let alphabet = [b'd', b'x', b' ', 0xC3];
    for len in 0..=11u32 {
        for mut n in 0..4usize.pow(len) {
            let mut text = Vec::new();
            let mut digit = b'0';
            for _ in 0..len {
                let b = alphabet[n % 4];
                n /= 4;
                text.push(if b == b'd' {
                    digit = if digit == b'9' { b'0' } else { digit + 1 };
                    digit
                } else {
                    b
                });
            }
            let mut out = b"prefix".to_vec();
            last4(&text, &mut out);
            assert_eq!(out[6..], last4_reference(&text), "{text:?}");
        }
    }
}

/// A number in exponent form is masked entirely (its last digits would be the exponent's); a
/// plain number or a fraction keeps its last four digits, as any text does.
#[test]
fn last4_masks_a_number_in_exponent_form() {
    assert_eq!(last4_of("4.111111111111234e15"), r#""***""#);
    assert_eq!(last4_of("4111111111111234E+0"), r#""***""#);
    assert_eq!(last4_of("4111111111111234"), r#""***1234""#);
    assert_eq!(last4_of("12345678.99"), r#""***7899""#);
    assert_eq!(
        last4_of("card 4111 1111 1111 1234, exp. 12/28"),
        r#""***1228""#
    );
}

/// Digits of other scripts are not counted by `last4`, so a value holding any is masked
/// entirely: the last four ASCII digits would be others than the value's last four.
#[test]
fn last4_masks_a_value_with_digits_of_another_script() {
    assert_eq!(last4_of("４111 2222 3333 ４５６７"), r#""***""#);
    assert_eq!(last4_of("4111 2222 3333 4567"), r#""***4567""#);
    assert_eq!(last4_of("4111 2222 3333 ٤٥٦٧"), r#""***""#);
    assert_eq!(last4_of("Zürich 4111 2222 3333 4567"), r#""***4567""#);
}
