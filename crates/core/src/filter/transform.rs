/*!
What each [`Transform`] writes in place of a value. The input is the value's text: a string's
unescaped bytes or a number's literal. Every output is a JSON string literal or `null`, so a
transformed value can never carry JSON structure.
*/
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Transform;
use crate::{Refusal, RefusalKind};

pub(super) type Hmac256 = Hmac<Sha256>;

/// Values with fewer digits than this are masked entirely by `last4`: with so few digits the
/// last four would reveal most of the value.
const LAST4_MIN_DIGITS: usize = 8;

/// Writes the transformed `text` to `out`. `hmac` is the keyed state for `pseudonymize`; without
/// one the call fails closed.
pub(super) fn apply(
    transform: Transform,
    text: &[u8],
    hmac: Option<&Hmac256>,
    out: &mut Vec<u8>,
) -> Result<(), Refusal> {
    match transform {
        Transform::Mask => out.extend_from_slice(b"\"***\""),
        Transform::Null => out.extend_from_slice(b"null"),
        Transform::Last4 => last4(text, out),
        Transform::Pseudonymize => {
            let Some(hmac) = hmac else {
                return Err(Refusal::new(
                    RefusalKind::NotReady,
                    "the policy pseudonymizes a field but this partner has no pseudonymization key",
                ));
            };
            let mut mac = hmac.clone();
            mac.update(text);
            out.push(b'"');
            push_hex(&mac.finalize().into_bytes().into(), out);
            out.push(b'"');
        }
    }
    Ok(())
}

/// One pass from the end: the last four digits, and whether there are at least
/// [`LAST4_MIN_DIGITS`] (counting stops there). A number in exponent form (`4.1e15`) is
/// masked entirely: its last digits are the exponent's, not the value's. So is text with a digit
/// of another script (fullwidth `４５６７`): counting only ASCII digits, its last four would be
/// others than the value's.
fn last4(text: &[u8], out: &mut Vec<u8>) {
    let number = |b: &u8| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E');
    let exponent = text.iter().any(|b| matches!(b, b'e' | b'E')) && text.iter().all(number);
    if exponent || (!text.is_ascii() && has_other_digits(text)) {
        out.extend_from_slice(b"\"***\"");
        return;
    }
    let mut masked = *b"\"***????\"";
    let mut found = 0;
    for &b in text.iter().rev() {
        if b.is_ascii_digit() {
            if let Some(slot) = 7usize.checked_sub(found).filter(|&at| at >= 4) {
                masked[slot] = b;
            }
            found += 1;
            if found == LAST4_MIN_DIGITS {
                out.extend_from_slice(&masked);
                return;
            }
        }
    }
    out.extend_from_slice(b"\"***\"");
}

/// Does the (UTF-8) text hold a numeric character other than an ASCII digit?
#[cold]
fn has_other_digits(text: &[u8]) -> bool {
    std::str::from_utf8(text)
        .is_ok_and(|t| t.chars().any(|c| c.is_numeric() && !c.is_ascii_digit()))
}

fn push_hex(bytes: &[u8; 32], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 64];
    for (pair, &b) in text.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0x0f)];
    }
    out.extend_from_slice(&text);
}

/// The keyed state for `pseudonymize`, built once per request.
pub(super) fn hmac_for(key: &[u8]) -> Option<Hmac256> {
    // HMAC accepts keys of any length, so this never fails in practice.
    Hmac256::new_from_slice(key).ok()
}

#[cfg(test)]
mod tests;
