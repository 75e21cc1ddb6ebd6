//! How results look: JSON for scripts, aligned text for people, and the short forms of
//! hashes, values and times that the text uses.

use anyhow::Result;
use serde::Serialize;
use tally_protocol::api::RaftRole;
use tally_protocol::Hash;

pub fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows as columns padded to their widest cell.
pub fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// The first 12 hex digits: enough to tell hashes apart in a listing.
pub fn short(h: &Hash) -> String {
    h.to_hex()[..12].to_string()
}

/// A value for people: the text when it is printable UTF-8, else `0x` and hex.
pub fn show_value(v: &[u8], utf8: Option<&str>) -> String {
    match utf8 {
        Some(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => s.to_string(),
        _ => format!("0x{}", hex::encode(v)),
    }
}

/// A Raft role as the API spells it (`leader`, `follower`, ...).
pub fn raft_role_name(r: RaftRole) -> Option<String> {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
}

/// `2024-05-01T12:00:00.123Z` from Unix milliseconds (UTC).
pub fn fmt_time_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil from days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc() {
        assert_eq!(fmt_time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt_time_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(fmt_time_ms(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
    }
}
