//! Kubernetes resource quantities (`100m`, `0.5`, `128Mi`, `1e3`), checked before they reach a
//! pod so a typo is refused with the annotation or config field named, and compared so a
//! request above its limit is caught here rather than by the API server's less specific error.

use std::fmt;

/// A quantity as written, with its value for comparisons.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantity {
    text: String,
    value: f64,
}

impl Quantity {
    /// `<number><suffix>`: a non-negative decimal number, then one of `m k M G T P E`,
    /// `Ki Mi Gi Ti Pi Ei`, an exponent `e<int>`/`E<int>`, or nothing.
    pub fn parse(s: &str) -> Result<Quantity, String> {
        let bad = || {
            format!(
                "{s:?} is not a Kubernetes quantity (a number with an optional suffix such as \
                 100m, 0.5, 128Mi, 1G)"
            )
        };
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        let digits = number.replace('.', "");
        if digits.is_empty() || number.matches('.').count() > 1 {
            return Err(bad());
        }
        let n: f64 = number.parse().map_err(|_| bad())?;
        let scale = match suffix {
            "" => 1.0,
            "m" => 1e-3,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "P" => 1e15,
            "E" => 1e18,
            "Ki" => 1024f64,
            "Mi" => 1024f64.powi(2),
            "Gi" => 1024f64.powi(3),
            "Ti" => 1024f64.powi(4),
            "Pi" => 1024f64.powi(5),
            "Ei" => 1024f64.powi(6),
            e if e.starts_with(['e', 'E']) => {
                let exp = &e[1..];
                let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let exp: i32 = exp.parse().map_err(|_| bad())?;
                10f64.powi(exp)
            }
            _ => return Err(bad()),
        };
        Ok(Quantity {
            text: s.to_owned(),
            value: n * scale,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value in base units (cores, bytes).
    pub fn value(&self) -> f64 {
        self.value
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_to_their_value() {
        let v = |s: &str| Quantity::parse(s).unwrap().value();
        assert_eq!(v("100m"), 0.1);
        assert_eq!(v("2"), 2.0);
        assert_eq!(v("0.5"), 0.5);
        assert_eq!(v("128Mi"), 128.0 * 1024.0 * 1024.0);
        assert_eq!(v("1G"), 1e9);
        assert_eq!(v("1e3"), 1000.0);
        assert_eq!(v("5E-1"), 0.5);
        assert_eq!(Quantity::parse("64Mi").unwrap().to_string(), "64Mi");
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for s in [
            "", "abc", "-1", "1.2.3", "10mb", "1e", "Mi", ".", "1 Mi", "1e+",
        ] {
            let e = Quantity::parse(s).unwrap_err();
            assert!(e.contains("is not a Kubernetes quantity"), "{s}: {e}");
        }
    }
}
