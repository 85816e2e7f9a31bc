use super::*;

#[test]
fn copy_span_copies_exactly_the_span() {
    // Spans on both sides of the fixed-size block, near the end of the input (where no
    // block fits) and after what `out` already holds.
    let input: Vec<u8> = (0..80).collect();
    for start in 0..input.len() {
        for end in start..=input.len().min(start + SHORT_SPAN + 3) {
            let mut out = b"head".to_vec();
            copy_span(&mut out, &input, start, end);
            assert_eq!(out[..4], *b"head");
            assert_eq!(out[4..], input[start..end], "{start}..{end}");
        }
    }
}
