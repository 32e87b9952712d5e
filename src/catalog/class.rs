//! GOES X-ray classes (`C1.0`, `M2.3`, `X10`), ordered by peak flux rather than as text:
//! `X10` > `X2.0` and `M10` > `M9.9`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Decimal places kept exactly; classes are written with one, rarely two.
const DECIMALS: u32 = 6;

/// A GOES class with its catalogue text. Equality and order are by flux, so `M1` == `M1.0`.
#[derive(Clone, Debug)]
pub struct GoesClass {
    text: String,
    /// Flux in units of 1e-14 W/m^2 (A1.0 = 10^6): integers compare exactly.
    key: u64,
}

/// Why a class string is not a GOES class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a GOES class (a letter A, B, C, M or X and a number, e.g. M2.3)")]
pub struct ClassError(pub String);

impl GoesClass {
    /// The class as the catalogue wrote it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Peak flux in W/m^2 (A=1e-8, B=1e-7, C=1e-6, M=1e-5, X=1e-4, times the number).
    pub fn flux(&self) -> f64 {
        self.key as f64 * 1e-14
    }

    /// The class letter (`A`, `B`, `C`, `M` or `X`).
    pub fn letter(&self) -> char {
        self.text.chars().next().unwrap_or('?').to_ascii_uppercase()
    }

    /// The class of `num / den` times this flux (rounded to the nearest 1e-14 W/m^2). The
    /// text keeps one decimal, cut rather than rounded, so it never ranks above the flux:
    /// C6.97 / 0.7 is shown C9.9, never M1.0.
    pub fn scaled(&self, num: u64, den: u64) -> GoesClass {
        let key = ((self.key as u128 * num as u128 + den as u128 / 2) / den as u128)
            .min(u64::MAX as u128) as u64;
        GoesClass {
            text: text_of(key),
            key,
        }
    }
}

/// `X13.2` for a flux key: the largest letter not above the flux, one decimal, cut.
fn text_of(key: u64) -> String {
    let decade = (1..=4u32)
        .rev()
        .find(|&d| key >= 10u64.pow(DECIMALS + d))
        .unwrap_or(0);
    let micro = key / 10u64.pow(decade);
    let letter = ['A', 'B', 'C', 'M', 'X'][decade as usize];
    let unit = 10u64.pow(DECIMALS);
    format!(
        "{letter}{}.{}",
        micro / unit,
        micro % unit / 10u64.pow(DECIMALS - 1)
    )
}

impl FromStr for GoesClass {
    type Err = ClassError;

    fn from_str(s: &str) -> Result<Self, ClassError> {
        let text = s.trim();
        let err = || ClassError(s.to_string());
        let mut chars = text.chars();
        let decade = match chars.next().map(|c| c.to_ascii_uppercase()) {
            Some('A') => 0,
            Some('B') => 1,
            Some('C') => 2,
            Some('M') => 3,
            Some('X') => 4,
            _ => return Err(err()),
        };
        let number = chars.as_str();
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || !digits(int)
            || !digits(frac)
            || (number.contains('.') && frac.is_empty())
            || frac.len() > DECIMALS as usize
        {
            return Err(err());
        }
        let int: u64 = int.parse().map_err(|_| err())?;
        let frac_units: u64 = if frac.is_empty() {
            0
        } else {
            let f: u64 = frac.parse().map_err(|_| err())?;
            f * 10u64.pow(DECIMALS - frac.len() as u32)
        };
        let micro = int
            .checked_mul(10u64.pow(DECIMALS))
            .and_then(|v| v.checked_add(frac_units))
            .ok_or_else(err)?;
        let key = micro.checked_mul(10u64.pow(decade)).ok_or_else(err)?;
        Ok(GoesClass {
            text: text.to_string(),
            key,
        })
    }
}

impl fmt::Display for GoesClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for GoesClass {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for GoesClass {}

impl PartialOrd for GoesClass {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GoesClass {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> GoesClass {
        s.parse().unwrap()
    }

    #[test]
    fn ranks_by_flux_not_text() {
        assert!(c("X10") > c("X2.0"));
        assert!(c("X2.0") > c("M9.9"));
        assert!(c("M10") > c("M9.9"));
        assert!(c("M1.0") > c("C9.9"));
        assert!(c("B1.0") > c("A9.9"));
        assert_eq!(c("M10"), c("X1.0"));
        assert_eq!(c("M1"), c("M1.0"));
        assert!(c("C1.05") > c("C1.0"));
        let mut v = [c("M9.9"), c("X10"), c("C1.0"), c("X2.0"), c("M10")];
        v.sort();
        let names: Vec<&str> = v.iter().map(|g| g.as_str()).collect();
        assert_eq!(names, ["C1.0", "M9.9", "M10", "X2.0", "X10"]);
    }

    #[test]
    fn flux_and_text() {
        assert!((c("X10").flux() - 1e-3).abs() < 1e-18);
        assert!((c("M2.3").flux() - 2.3e-5).abs() < 1e-18);
        assert!((c("A1.0").flux() - 1e-8).abs() < 1e-22);
        assert_eq!(c(" M2.3 ").as_str(), "M2.3");
        assert_eq!(c("X10").to_string(), "X10");
        assert_eq!(c("m1.5").letter(), 'M');
    }

    #[test]
    fn scaling_keeps_the_order_and_cuts_the_text() {
        // Operational to science: divide by 0.7.
        let sci = |s: &str| c(s).scaled(10, 7);
        assert_eq!(sci("C7.0"), c("M1.0"));
        assert_eq!(sci("C7.0").as_str(), "M1.0");
        assert!(sci("C6.9") < c("M1.0"));
        assert_eq!(sci("C6.9").as_str(), "C9.8");
        assert_eq!(sci("C6.97").as_str(), "C9.9");
        assert!(sci("C6.97") < c("M1.0"));
        assert_eq!(sci("X9.3").as_str(), "X13.2");
        assert_eq!(sci("B3.5").as_str(), "B5.0");
        // Science to operational: times 0.7, and back.
        let op = c("M1.0").scaled(7, 10);
        assert_eq!((op.as_str(), op == c("C7.0")), ("C7.0", true));
        assert_eq!(c("X1.0").scaled(7, 10).as_str(), "M7.0");
        assert_eq!(c("A1.0").scaled(7, 10).as_str(), "A0.7");
        assert_eq!(c("M2.5").scaled(7, 10).scaled(10, 7), c("M2.5"));
    }

    #[test]
    fn rejects_malformed_classes() {
        for bad in [
            "M", "Q1.0", "X1.2.3", "", "  ", "M-1.0", "M1.", "M.5", "1.0", "M1e3", "MX1",
        ] {
            let e = bad.parse::<GoesClass>().unwrap_err();
            assert_eq!(e.0, bad, "{bad:?}");
        }
    }
}
