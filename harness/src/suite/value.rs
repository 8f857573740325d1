//! The values a suite writes that need more than serde: durations
//! (bounded, so that no window can overflow) and regular expressions
//! (compiled when the suite loads, unless they hold variables).

use std::time::Duration;

use serde::Deserialize;

/// A regular expression as a suite writes it: compiled when the suite
/// loads, unless it holds `${variables}`, which are filled in once per
/// step.
#[derive(Clone, Debug)]
pub struct Re {
    /// The expression as written.
    pub source: String,
    /// The compiled expression, when it names no variable.
    pub compiled: Option<regex::Regex>,
}

impl Re {
    /// Compiles `source` unless it names a variable; an invalid
    /// expression is left uncompiled for the parser to report.
    pub fn new(source: &str) -> Self {
        let compiled = if source.contains("${") {
            None
        } else {
            regex::Regex::new(source).ok()
        };
        Re {
            source: source.to_owned(),
            compiled,
        }
    }
}

impl<'de> Deserialize<'de> for Re {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Re::new(&s))
    }
}

/// A duration written as `500ms`, `2s` or `1m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// The longest duration a suite or profile may write: a day. Longer
/// windows are a mistake, and unbounded ones would overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses `250ms`, `2s`, `1.5s` or `1m`, up to [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| t.split_at(i))
        .ok_or_else(|| format!("duration `{t}` has no unit (ms, s or m)"))?;
    let n: f64 = num
        .parse()
        .map_err(|_| format!("duration `{t}` does not start with a number"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("duration `{t}` has unit `{unit}`; use ms, s or m")),
    };
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!(
            "duration `{t}` is out of range: at most {}s (a day)",
            MAX_DURATION.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("100000000000000000000s").is_err());
        assert!(parse_duration("10000000000000000000s").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("1441m").is_err());
        assert!(parse_duration("1440m").is_ok());
    }

    #[test]
    fn regexes_without_variables_are_compiled_at_load() {
        assert!(Re::new("^a+$").compiled.is_some());
        assert!(Re::new("(?i)^${tenant}$").compiled.is_none());
        assert!(Re::new("(unclosed").compiled.is_none());
    }
}
