//! Durations as operators type them: a number and a unit, optionally several
//! (`500ms`, `30s`, `5m`, `1h30m`). A bare number is refused, so `--expires-in 30` cannot mean
//! thirty milliseconds to one reader and thirty seconds to another.

use std::time::Duration;

/// Parses a duration such as `30s` or `1m30s` (units: `ms`, `s`, `m`, `h`).
pub fn parse(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration (expected e.g. 30s, 500ms, 5m, 1h30m)".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "{s:?} is not a duration (expected e.g. 30s, 500ms, 5m, 1h30m)"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (number too large)"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "" => {
                return Err(format!(
                    "{s:?} has no unit (add ms, s, m or h, e.g. {number}s)"
                ));
            }
            other => {
                return Err(format!(
                    "{s:?} has an unknown unit {other:?} (use ms, s, m or h)"
                ));
            }
        };
        rest = &rest[unit_len..];
        let part = u32::try_from(number)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(|| format!("{s:?} is too long"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{s:?} is too long"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_compounds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h0m1s500ms"), Ok(Duration::from_millis(3_601_500)));
        assert_eq!(parse(" 10s "), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn refuses_what_it_cannot_read_unambiguously() {
        for bad in ["", "30", "s", "soon", "1.5s", "-1s", "10 s", "3d", "1m30"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse("30").unwrap_err().contains("no unit"));
        assert!(parse("99999999999999999999s").is_err());
    }
}
