use super::*;

#[test]
fn string_ids() {
    use BadId::*;
    let cases: &[(&str, Result<(), BadId>)] = &[
        ("c-200", Ok(())),
        ("300", Ok(())),
        ("-5", Ok(())),
        ("0", Ok(())),
        ("12345678901234567890123", Ok(())),
        ("Müller-7", Ok(())),
        ("1e5x", Ok(())),
        ("12.5", Ok(())),
        ("-0.25", Ok(())),
        ("", Err(Empty)),
        ("c-200\u{0}", Err(ControlCharacter)),
        ("c-200\n", Err(ControlCharacter)),
        ("c\u{85}200", Err(ControlCharacter)),
        (" 300", Err(SurroundingWhitespace)),
        ("c-200 ", Err(SurroundingWhitespace)),
        ("c-200\u{a0}", Err(SurroundingWhitespace)),
        ("\u{3000}c-200", Err(SurroundingWhitespace)),
        ("0300", Err(NonCanonicalNumber)),
        ("+300", Err(NonCanonicalNumber)),
        ("-0", Err(NonCanonicalNumber)),
        ("300.0", Err(NonCanonicalNumber)),
        ("300.", Err(NonCanonicalNumber)),
        (".5e1", Err(NonCanonicalNumber)),
        (".5", Ok(())),
        ("3e2", Err(NonCanonicalNumber)),
        ("3E+2", Err(NonCanonicalNumber)),
        ("0x12C", Err(NonCanonicalNumber)),
        ("1_000", Err(NonCanonicalNumber)),
        ("_1", Err(NonCanonicalNumber)),
        ("-__0x1F", Err(NonCanonicalNumber)),
        ("+_.5e1", Err(NonCanonicalNumber)),
        ("_c-200", Ok(())),
        ("e5", Ok(())),
        ("x300", Ok(())),
        ("--300", Ok(())),
        ("\u{ff13}\u{ff10}\u{ff10}", Err(NonCanonicalNumber)),
        ("\u{ff43}-200", Err(NotNfkc)),
        ("cu\u{17f}tomer", Err(NotNfkc)),
        ("c-1\u{200b}", Err(Invisible)),
        ("\u{200b}c-1", Err(Invisible)),
        ("c\u{ad}-1", Err(Invisible)),
        ("c-1\u{2060}", Err(Invisible)),
        ("\u{feff}c-1", Err(Invisible)),
        ("M\u{fc}ller\u{200e}", Err(Invisible)),
        ("c-out\u{34f}", Err(Invisible)),
        ("\u{663}\u{660}\u{660}", Err(NonCanonicalNumber)),
        ("\u{969}\u{966}\u{966}", Err(NonCanonicalNumber)),
        ("-\u{663}", Err(NonCanonicalNumber)),
        ("c-\u{663}\u{660}\u{660}", Ok(())),
        ("c-out\u{fe0f}", Err(Invisible)),
        ("c\u{115f}-out", Err(Invisible)),
        ("c\u{1160}-out", Err(Invisible)),
        ("c-out\u{17b4}", Err(Invisible)),
    ];
    for (id, want) in cases {
        assert_eq!(check_string_id(id), *want, "{id:?}");
    }
    // As long as an opt-out can be, and no longer.
    let longest = "x".repeat(MAX_ID_LEN);
    assert_eq!(check_string_id(&longest), Ok(()));
    assert_eq!(check_string_id(&format!("{longest}x")), Err(TooLong));
    // Too long is said only of a value clean otherwise: every other rule is applied first.
    let padded = format!("c-out{}", " ".repeat(MAX_ID_LEN));
    assert_eq!(check_string_id(&padded), Err(SurroundingWhitespace));
    let zeros = format!("{}300", "0".repeat(MAX_ID_LEN));
    assert_eq!(check_string_id(&zeros), Err(NonCanonicalNumber));
    let hidden = format!("c-out{}", "\u{200b}".repeat(100));
    assert_eq!(check_string_id(&hidden), Err(Invisible));
    let nul = format!("c-out{}", "\u{0}".repeat(MAX_ID_LEN));
    assert_eq!(check_string_id(&nul), Err(ControlCharacter));
    let wide_letters = "\u{ff43}".repeat(100);
    assert_eq!(check_string_id(&wide_letters), Err(NotNfkc));
    let wide = "\u{e9}".repeat(MAX_ID_LEN / 2);
    assert_eq!(check_string_id(&wide), Ok(()));
    assert_eq!(check_string_id(&format!("{wide}x")), Err(TooLong));
}

#[test]
fn integer_literals() {
    for ok in ["0", "300", "-300", "9007199254740991", "-9007199254740991"] {
        assert_eq!(check_integer_literal(ok), Ok(()), "{ok}");
    }
    for unsafe_ in [
        "9007199254740992",
        "-9007199254740992",
        "12345678901234567890",
        "123456789012345678901234567890",
    ] {
        assert_eq!(
            check_integer_literal(unsafe_),
            Err(BadId::UnsafeInteger),
            "{unsafe_}"
        );
    }
    assert_eq!(check_integer_literal("-0"), Err(BadId::NonCanonicalNumber));
}

#[test]
fn url_values() {
    for bad in [
        "c-200;v=1",
        "c-100,c-200",
        ";",
        ",",
        "c-200?",
        "c-200#x",
        "c-200?a=1",
        "c-200&ref=c-100",
        "%63-200",
        "c-200%3F",
    ] {
        assert_eq!(check_url_value(bad), Err(BadId::Separator), "{bad}");
    }
    assert_eq!(check_url_value("c-200"), Ok(()));
    assert_eq!(check_url_value("0300"), Err(BadId::NonCanonicalNumber));
}

struct Set(&'static [&'static str]);
impl OptOutLookup for Set {
    fn is_opted_out(&self, subject: &str) -> bool {
        self.0.contains(&subject)
    }
}

#[test]
fn lookups_ignore_case() {
    let set = Set(&["c-200", "AB-7"]);
    for id in ["c-200", "C-200", "ab-7", "AB-7"] {
        assert!(is_opted_out(&set, id), "{id}");
    }
    for id in ["c-2000", "c-20", "ab-8"] {
        assert!(!is_opted_out(&set, id), "{id}");
    }
}

#[test]
fn keys_folding_to_the_subject() {
    for key in [
        "Customer_Id",
        "CUSTOMER_ID",
        "cu\u{17f}tomer_id",
        "\u{ff43}ustomer_id",
    ] {
        assert!(folds_to_subject(key, "customer_id"), "{key}");
    }
    assert!(folds_to_subject("s\u{212a}u", "sku"));
    // Java's `equalsIgnoreCase`, and Jackson in a Turkish locale, read İ and ı as i.
    for key in [
        "customer_\u{130}d",
        "customer_\u{131}d",
        "CUSTOMER_\u{130}D",
    ] {
        assert!(folds_to_subject(key, "customer_id"), "{key}");
    }
    // Readers that drop invisible characters, cut at a NUL or trim names.
    for key in [
        "customer\u{ad}_id",
        "customer_id\u{200b}",
        "\u{feff}customer_id",
        "customer_id\0",
        "customer_id\0x",
        "customer_id ",
        " customer_id",
        "customer_id\t",
        "CUSTOMER\u{ad}_ID ",
        "customer_id\u{1}",
        "customer_id\u{1f}",
        "customer\0_id",
        "\u{7f}customer_id",
    ] {
        assert!(folds_to_subject(key, "customer_id"), "{key:?}");
    }
    for key in [
        "customer_id",
        "customer_ids",
        "customerid",
        "name",
        "customer id",
        "\0",
    ] {
        assert!(!folds_to_subject(key, "customer_id"), "{key}");
    }
}

#[test]
fn ascii_ids_are_judged_as_any_id() {
    // Every ASCII id of up to 3 bytes from a set of telling bytes, and longer random ones.
    const BYTES: &[u8] = b" \t\n\x0b\x0c\r\x00\x1f\x7f+-._0129aexXob,;cC@";
    let mut ids: Vec<String> = vec![String::new()];
    for len in 1..=3 {
        let mut idx = vec![0usize; len];
        loop {
            ids.push(idx.iter().map(|&i| char::from(BYTES[i])).collect());
            let Some(at) = idx.iter().rposition(|&i| i + 1 < BYTES.len()) else {
                break;
            };
            idx[at] += 1;
            idx[at + 1..].iter_mut().for_each(|i| *i = 0);
        }
    }
    let mut state = 0x1234_5678_9ABC_DEF1_u64;
    for _ in 0..20_000 {
        let len = (state % 12) as usize;
        let id: String = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(BYTES[(state % BYTES.len() as u64) as usize])
            })
            .collect();
        ids.push(id);
    }
    ids.extend(["c-1000", "1000", "0x1F", "1e3", " 1", "300.0", "_1", "+5"].map(String::from));
    for id in &ids {
        assert_eq!(check_string_id(id), check_any_id(id), "{id:?}");
    }
}

#[test]
fn only_what_may_start_a_number_reads_as_one() {
    // `denotes_integer` skips `reads_as_integer` unless the first byte may start a number:
    // every short text that reads as an integer starts so.
    let bytes = b"0159+-_.xXoObBeEaf \t";
    for len in 1..=5u32 {
        for mut n in 0..bytes.len().pow(len) {
            let mut text = Vec::new();
            for _ in 0..len {
                text.push(bytes[n % bytes.len()]);
                n /= bytes.len();
            }
            let text = std::str::from_utf8(&text).unwrap();
            if reads_as_integer(text) {
                assert!(may_start_a_number(text.as_bytes().first()), "{text:?}");
            }
        }
    }
    for text in [
        "+1", "-0", "0x1F", "_1", ".5", "1e3", "+_1", "-.5", "_0x1", "inf", "NaN", "\u{ff11}",
    ] {
        assert_eq!(denotes_integer(text), reads_as_integer(text), "{text:?}");
    }
}

#[test]
fn a_dotted_capital_i_reads_as_i_as_per_character_lowercasing_has_it() {
    let set = Set(&["tiki", "\u{130}LIK", "TOKI"]);
    // `TOKI` is stored all in ASCII capitals, which no other form is indexed under.
    assert!(is_opted_out(&set, "TOK\u{130}"));
    assert!(is_opted_out(&set, "tok\u{130}"));
    for id in ["TİKİ", "tİki", "TIKI", "tiki"] {
        assert!(is_opted_out(&set, id), "{id}");
    }
    // The stored `İLİK`'s forms are indexed by the real set; the lookup's own forms meet it.
    assert!(is_opted_out(&set, "\u{130}LIK"));
}

#[test]
fn only_case_variants_of_honoured_scopes_are_refused_as_new() {
    use crate::optout::Scope;
    for ok in ["partner_sharing", "partner:biz", "Research", "research.v2"] {
        assert!(Scope::parse_new(ok).is_ok(), "{ok}");
    }
    for bad in [
        "Partner_Sharing",
        "PARTNER_SHARING",
        "partner:BIZ",
        "Partner:biz",
    ] {
        assert!(Scope::parse_new(bad).is_err(), "{bad}");
        assert!(
            Scope::parse(bad).is_ok(),
            "{bad} still loads and can be removed"
        );
        let (stored, miscased) = Scope::parse_stored(bad).unwrap();
        assert_eq!(
            stored.as_str(),
            bad.to_ascii_lowercase(),
            "read as what it spells"
        );
        assert!(miscased);
    }
    for ok in ["partner_sharing", "partner:biz", "Research"] {
        assert_eq!(
            Scope::parse_stored(ok).unwrap(),
            (Scope::parse(ok).unwrap(), false)
        );
    }
}

#[test]
fn a_lenient_reader_takes_these_for_the_integers_they_spell() {
    for (text, integers) in [
        ("0300", &["300", "192"][..]),
        ("0454", &["454", "300"]),
        ("0900", &["900"]),
        ("+300", &["300"]),
        ("300.0", &["300"]),
        ("3e2", &["300"]),
        ("3e+2", &["300"]),
        ("0x12c", &["300"]),
        ("00", &["0"]),
        ("-0", &["0"]),
        ("-07", &["-7"]),
        ("1_000", &["1000"]),
        ("300", &["300"]),
        ("12.5", &[]),
        ("c-300", &[]),
        ("1e400", &[]),
        ("99999999999999999999", &["99999999999999999999"]),
        ("09007199254740993", &["9007199254740993"]),
        ("9_007_199_254_740_993", &["9007199254740993"]),
        ("9007199254740993.0", &["9007199254740993"]),
        ("1e20", &[]),
        ("٣٠٠", &[]),
        ("0x", &[]),
        ("-", &[]),
        (".", &[]),
        ("__", &[]),
    ] {
        assert_eq!(super::integer_readings(text), integers, "{text}");
    }
    let runs: Vec<&str> = super::number_runs("a 3e+2 [0x12c] x.5 c-200").collect();
    assert_eq!(runs, ["3e+2", "0x12c"]);
}
