//! Durations and counts that come from outside (a flag, a file, the environment). Each
//! setting states its range once, as a [`Count`] or a [`Span`] beside its definition, and
//! a value gets in only through that range's `parse` or `check`, refused naming the value.
//! Past the way in nothing overflows or wraps on it (a cycle of 500000000000 years, a
//! group of 2^32 + 1 ranks).

use crate::setting::BadSetting;
use std::marker::PhantomData;
use std::time::Duration;

/// An integer type a count is held in.
pub trait Whole: Copy + Send + Sync + 'static {
    fn to_i128(self) -> i128;
    fn from_i128(v: i128) -> Option<Self>;
}

macro_rules! whole {
    ($($t:ty),*) => {$(
        impl Whole for $t {
            fn to_i128(self) -> i128 {
                // Widening: every value of these types is an i128.
                self as i128
            }
            fn from_i128(v: i128) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
        }
    )*};
}

whole!(u8, u16, u32, u64, usize, i32, i64);

/// The range `min..=max` of a count setting held in a `T`.
pub struct Count<T> {
    setting: &'static str,
    what: &'static str,
    min: T,
    max: T,
    _held_in: PhantomData<fn() -> T>,
}

impl<T: Copy> Clone for Count<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Copy> Copy for Count<T> {}

impl<T: Whole> Count<T> {
    /// The range of `setting` (its config field, as `setting::bad` names it), `what` being
    /// its name in a message.
    pub const fn new(setting: &'static str, what: &'static str, min: T, max: T) -> Self {
        Count {
            setting,
            what,
            min,
            max,
            _held_in: PhantomData,
        }
    }

    /// The smallest value accepted.
    pub fn min(&self) -> T {
        self.min
    }

    /// The largest value accepted.
    pub fn max(&self) -> T {
        self.max
    }

    /// `value`, or the error naming it and the range.
    pub fn check(&self, value: T) -> Result<T, BadSetting> {
        let v = value.to_i128();
        self.within(v, &v.to_string())
    }

    /// The whole number `text` spells, or the error naming `text` and the range.
    pub fn parse(&self, text: &str) -> Result<T, BadSetting> {
        let t = text.trim();
        match t.parse::<i128>() {
            Ok(v) => self.within(v, t),
            // Digits beyond i128 are a number far outside any range.
            Err(_) if is_integer_spelling(t) => Err(self.outside(t)),
            Err(_) => Err(self.refuse(format!("{} {text:?} is not a whole number", self.what))),
        }
    }

    /// The parser of a flag taking this setting (clap's `value_parser`).
    pub fn flag(self) -> impl Fn(&str) -> Result<T, BadSetting> + Clone + Send + Sync + 'static {
        move |text: &str| self.parse(text)
    }

    fn within(&self, v: i128, shown: &str) -> Result<T, BadSetting> {
        match T::from_i128(v) {
            Some(t) if (self.min.to_i128()..=self.max.to_i128()).contains(&v) => Ok(t),
            _ => Err(self.outside(shown)),
        }
    }

    fn outside(&self, shown: &str) -> BadSetting {
        self.refuse(format!(
            "{} {shown} is outside {}..={}",
            self.what,
            self.min.to_i128(),
            self.max.to_i128()
        ))
    }

    fn refuse(&self, message: String) -> BadSetting {
        BadSetting {
            setting: self.setting,
            message,
        }
    }
}

/// `[+-]digits`.
fn is_integer_spelling(t: &str) -> bool {
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The range `min..=max` of a duration setting.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    setting: &'static str,
    what: &'static str,
    min: Duration,
    max: Duration,
}

impl Span {
    /// The range of `setting`, `what` being its name in a message.
    pub const fn new(
        setting: &'static str,
        what: &'static str,
        min: Duration,
        max: Duration,
    ) -> Self {
        Span {
            setting,
            what,
            min,
            max,
        }
    }

    pub fn min(&self) -> Duration {
        self.min
    }

    pub fn max(&self) -> Duration {
        self.max
    }

    /// `d`, or the error naming it and the range.
    pub fn check(&self, d: Duration) -> Result<Duration, BadSetting> {
        if (self.min..=self.max).contains(&d) {
            Ok(d)
        } else {
            Err(self.outside(&show(d)))
        }
    }

    /// The duration `text` spells (`90s`, `12m`, `1h 30m`), or the error naming `text`
    /// and the range.
    pub fn parse(&self, text: &str) -> Result<Duration, BadSetting> {
        let t = text.trim();
        match humantime::parse_duration(t) {
            Ok(d) if (self.min..=self.max).contains(&d) => Ok(d),
            Ok(_) | Err(humantime::DurationError::NumberOverflow) => Err(self.outside(t)),
            Err(_) => Err(BadSetting {
                setting: self.setting,
                message: format!(
                    "{} {text:?} is not a duration (e.g. 30s, 10m, 2h)",
                    self.what
                ),
            }),
        }
    }

    /// The parser of a flag taking this setting (clap's `value_parser`).
    pub fn flag(
        self,
    ) -> impl Fn(&str) -> Result<Duration, BadSetting> + Clone + Send + Sync + 'static {
        move |text: &str| self.parse(text)
    }

    fn outside(&self, shown: &str) -> BadSetting {
        BadSetting {
            setting: self.setting,
            message: format!(
                "{} {shown} is outside {}..={}",
                self.what,
                show(self.min),
                show(self.max)
            ),
        }
    }
}

/// `d` in its largest whole unit (`366d`, `10m`, `1500ms`), as a flag would spell it.
pub fn show(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        return format!("{}ms", d.as_millis());
    }
    match [(86_400, "d"), (3600, "h"), (60, "m")]
        .into_iter()
        .find(|(unit, _)| s.is_multiple_of(*unit))
    {
        Some((unit, name)) => format!("{}{name}", s / unit),
        None => format!("{s}s"),
    }
}

/// `n` seconds, for stating a range.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` days, for stating a range.
pub const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: Count<u32> = Count::new("epochs", "epochs", 1, 1000);
    const S: Span = Span::new("every", "cycle", secs(1), days(366));

    #[test]
    fn counts_outside_their_range_or_not_numbers_are_refused_naming_the_value() {
        assert_eq!(N.parse("1").unwrap(), 1);
        assert_eq!(N.parse(" 1000 ").unwrap(), 1000);
        assert_eq!((N.min(), N.max()), (1, 1000));
        for (text, says) in [
            ("0", "epochs 0 is outside 1..=1000"),
            ("-1", "epochs -1 is outside 1..=1000"),
            ("1001", "epochs 1001 is outside 1..=1000"),
            (
                "99999999999999999999999999999999999999999",
                "epochs 99999999999999999999999999999999999999999 is outside 1..=1000",
            ),
            ("1e400", "epochs \"1e400\" is not a whole number"),
            ("ten", "epochs \"ten\" is not a whole number"),
            ("", "epochs \"\" is not a whole number"),
        ] {
            let err = N.parse(text).unwrap_err();
            assert_eq!((err.setting, err.message.as_str()), ("epochs", says));
        }
        assert_eq!(
            N.check(0).unwrap_err().message,
            "epochs 0 is outside 1..=1000"
        );
    }

    #[test]
    fn durations_outside_their_range_or_not_durations_are_refused_naming_the_value() {
        assert_eq!(S.parse("1h").unwrap(), secs(3600));
        assert_eq!(S.parse("366days").unwrap(), days(366));
        for (text, says) in [
            ("0s", "cycle 0s is outside 1s..=366d"),
            ("500000000000y", "cycle 500000000000y is outside 1s..=366d"),
            ("600000000000y", "cycle 600000000000y is outside 1s..=366d"),
            (
                "1e400",
                "cycle \"1e400\" is not a duration (e.g. 30s, 10m, 2h)",
            ),
            ("-5s", "cycle \"-5s\" is not a duration (e.g. 30s, 10m, 2h)"),
            (
                "soon",
                "cycle \"soon\" is not a duration (e.g. 30s, 10m, 2h)",
            ),
        ] {
            let err = S.parse(text).unwrap_err();
            assert_eq!((err.setting, err.message.as_str()), ("every", says));
        }
        assert_eq!(
            S.check(days(367)).unwrap_err().message,
            "cycle 367d is outside 1s..=366d"
        );
        assert_eq!(show(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show(secs(90)), "90s");
        assert_eq!(show(secs(600)), "10m");
    }
}
