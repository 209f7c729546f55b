//! JSON text the library writes itself, quickly: a checkpoint's state and a stage's update,
//! on every node commit.
//!
//! A state is mostly strings (a conversation, a document), and `serde_json` escapes a string
//! byte by byte. [`write_value`] writes a [`Value`] as `serde_json` would, byte for byte, but
//! copies each string that needs no escaping whole, after checking it eight bytes at a time;
//! a string that does need escaping is left to `serde_json`. What it writes is JSON by
//! construction, so [`JsonText`] carries it to the database without parsing it again (as a
//! [`RawJson`](crate::RawJson) made from text would).

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::{Map, Value};

/// JSON text that the library wrote, so known to be JSON.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct JsonText(String);

impl JsonText {
    /// What [`write_value`] and the like wrote into `out`.
    pub(crate) fn written(out: Vec<u8>) -> Self {
        // Every writer here writes UTF-8 only (its input's strings, and ASCII).
        JsonText(
            String::from_utf8(out)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        )
    }

    /// `value`'s text.
    pub(crate) fn of(value: &Value) -> serde_json::Result<Self> {
        let mut out = Vec::new();
        write_value(&mut out, value)?;
        Ok(JsonText::written(out))
    }

    /// `value`'s text.
    #[cfg(test)]
    pub(crate) fn of_value(value: &Value) -> Self {
        JsonText::of(value).expect("a Value writes to a Vec")
    }

    /// The JSON text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Writes `value` as `serde_json::to_writer` would.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) -> serde_json::Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => serde_json::to_writer(&mut *out, number)?,
        Value::String(string) => write_str(out, string)?,
        Value::Array(items) => write_array(out, items)?,
        Value::Object(map) => write_object(out, map)?,
    }
    Ok(())
}

/// Writes `items` as a JSON array, as `serde_json::to_writer` would.
pub(crate) fn write_array(out: &mut Vec<u8>, items: &[Value]) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(out, item)?;
    }
    out.push(b']');
    Ok(())
}

/// Writes `map` as `serde_json::to_writer` would.
pub(crate) fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) -> serde_json::Result<()> {
    out.push(b'{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key)?;
        out.push(b':');
        write_value(out, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// Writes `string` as a JSON string, as `serde_json::to_writer` would.
pub(crate) fn write_str(out: &mut Vec<u8>, string: &str) -> serde_json::Result<()> {
    if needs_escaping(string.as_bytes()) {
        return serde_json::to_writer(&mut *out, string);
    }
    out.reserve(string.len() + 2);
    out.push(b'"');
    out.extend_from_slice(string.as_bytes());
    out.push(b'"');
    Ok(())
}

/// Writes `at` as a JSON string, as its `Serialize` (chrono's) would: RFC 3339 in UTC, with
/// `Z`, and the fraction of a second in 0, 3, 6 or 9 digits, the fewest that hold it.
pub(crate) fn write_timestamp(out: &mut Vec<u8>, at: &DateTime<Utc>) -> serde_json::Result<()> {
    // Read once as a date and a time: each field of a `DateTime` applies its offset again.
    let naive = at.naive_utc();
    let (date, time) = (naive.date(), naive.time());
    let year = date.year();
    if !(0..=9999).contains(&year) {
        // Signed, and of any width: rare enough to leave to chrono.
        return serde_json::to_writer(&mut *out, at);
    }
    let (mut second, mut nano) = (time.second(), time.nanosecond());
    if nano >= 1_000_000_000 {
        // A leap second, as chrono writes it.
        second += 1;
        nano -= 1_000_000_000;
    }
    out.push(b'"');
    push_digits(out, year as u32, 4);
    for (separator, value) in [(b'-', date.month()), (b'-', date.day())] {
        out.push(separator);
        push_digits(out, value, 2);
    }
    for (separator, value) in [(b'T', time.hour()), (b':', time.minute()), (b':', second)] {
        out.push(separator);
        push_digits(out, value, 2);
    }
    let fraction = match nano {
        0 => None,
        n if n % 1_000_000 == 0 => Some((n / 1_000_000, 3)),
        n if n % 1_000 == 0 => Some((n / 1_000, 6)),
        n => Some((n, 9)),
    };
    if let Some((digits, width)) = fraction {
        out.push(b'.');
        push_digits(out, digits, width);
    }
    out.extend_from_slice(b"Z\"");
    Ok(())
}

/// Writes the `width` last decimal digits of `value`, zero-padded.
fn push_digits(out: &mut Vec<u8>, mut value: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for digit in out[start..].iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Whether `bytes` hold a byte that a JSON string escapes: `"`, `\` or a control character
/// (below 0x20). The others, UTF-8 sequences included, are written as they are.
fn needs_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    // The high bit of each byte of the result is set where `word`'s byte is below `n`
    // (n ≤ 0x80); a zero byte is below 1. Bytes with their own high bit set never are,
    // which `!word` sees to.
    fn below(word: u64, n: u8) -> u64 {
        word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
    }
    let mut words = bytes.chunks_exact(8);
    for chunk in words.by_ref() {
        let mut eight = [0; 8];
        eight.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(eight);
        if below(word, 0x20) | below(word ^ QUOTES, 1) | below(word ^ BACKSLASHES, 1) != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn written(value: &Value) -> String {
        JsonText::of_value(value).as_str().to_owned()
    }

    #[test]
    fn a_value_is_written_byte_for_byte_as_serde_json_writes_it() {
        let value = json!({
            "text": "plain words, long enough to be read eight bytes at a time",
            "quote": "she said \"hi\"",
            "backslash": "C:\\path",
            "controls": "tab\there\nnewline \u{0} nul \u{1f} unit",
            "unicode": "ünïcödé ✓ 😀 and a quote at the end\"",
            "short": "ab\"",
            "empty": "",
            "numbers": [0, -1, 18446744073709551615u64, -9223372036854775808i64, 1.5, 1e300, 0.1],
            "nested": {"a": [true, false, null, {}, []], "b": {"c": "d"}},
            "key \"quoted\"\n": 1,
        });
        assert_eq!(written(&value), serde_json::to_string(&value).unwrap());
    }

    #[test]
    fn every_byte_that_must_be_escaped_is_found_wherever_it_is_in_a_string() {
        for byte in (0u8..0x20).chain([b'"', b'\\']) {
            for at in 0..20 {
                let mut bytes = vec![b'x'; 20];
                bytes[at] = byte;
                let string = String::from_utf8(bytes).unwrap();
                assert!(needs_escaping(string.as_bytes()), "{byte:#x} at {at}");
                assert_eq!(
                    written(&Value::String(string.clone())),
                    serde_json::to_string(&string).unwrap()
                );
            }
        }
    }

    #[test]
    fn bytes_that_need_no_escaping_are_not_taken_for_ones_that_do() {
        // Each printable ASCII byte but `"` and `\`, and each byte of multi-byte UTF-8
        // (0x80 and above): beside the ones escaped, they are where a word-at-a-time check
        // could go wrong.
        let clean: String = (0x20u8..0x7f)
            .filter(|b| *b != b'"' && *b != b'\\')
            .map(char::from)
            .chain("é✓😀\u{7f}\u{80}\u{ff}".chars())
            .collect();
        assert!(!needs_escaping(clean.as_bytes()));
        assert_eq!(
            written(&json!(clean)),
            serde_json::to_string(&clean).unwrap()
        );
    }

    #[test]
    fn a_timestamp_is_written_as_chrono_serializes_it() {
        use chrono::{NaiveDate, TimeZone};
        let day = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        let at =
            |h, m, s, nano| Utc.from_utc_datetime(&day.and_hms_nano_opt(h, m, s, nano).unwrap());
        let year = |y| Utc.with_ymd_and_hms(y, 12, 31, 23, 59, 59).unwrap();
        let cases = [
            Utc::now(),
            at(0, 0, 0, 0),
            at(9, 8, 7, 120_000_000),
            at(9, 8, 7, 120_300_000),
            at(9, 8, 7, 120_304_005),
            at(9, 8, 7, 1),
            at(23, 59, 59, 1_500_000_000), // a leap second
            year(0),
            year(9999),
            year(10_000),
            year(-1),
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
        ];
        for at in cases {
            let mut out = Vec::new();
            write_timestamp(&mut out, &at).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&at).unwrap(),
                "{at:?}"
            );
        }
    }
}
