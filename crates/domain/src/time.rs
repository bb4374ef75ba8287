//! Timestamps: stored as whole seconds, rendered as Cloud Controller does
//! (`2015-10-13T17:31:43Z`, second precision).

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(chrono::Utc::now().timestamp())
    }

    pub fn seconds(self) -> i64 {
        self.0
    }

    /// Reads `YYYY-MM-DDThh:mm:ssZ` exactly, the only form CC's filters take (no fraction,
    /// no offset). A string of that shape that names no real second (`2020-02-30…`,
    /// `…T24:00:00Z`) is refused too.
    pub fn parse(raw: &str) -> Option<Timestamp> {
        let shape_ok = raw.len() == 20
            && raw.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                10 => b == b'T',
                13 | 16 => b == b':',
                19 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        if !shape_ok {
            return None;
        }
        let number = |range: std::ops::Range<usize>| raw.get(range)?.parse::<u32>().ok();
        let date = chrono::NaiveDate::from_ymd_opt(
            i32::try_from(number(0..4)?).ok()?,
            number(5..7)?,
            number(8..10)?,
        )?;
        let time = date.and_hms_opt(number(11..13)?, number(14..16)?, number(17..19)?)?;
        Some(Timestamp(time.and_utc().timestamp()))
    }
}

/// How a timestamp chrono cannot represent is shown.
const EPOCH: &str = "1970-01-01T00:00:00Z";

impl Timestamp {
    /// `YYYY-MM-DDThh:mm:ssZ`, written digit by digit: every package body shows two, a
    /// list page a hundred, and chrono's `format` parses its pattern each time. Years
    /// past 9999 (or before 0) have no such form.
    fn rendered(self) -> Option<[u8; 20]> {
        use chrono::{Datelike, Timelike};
        let t = chrono::DateTime::from_timestamp(self.0, 0)?;
        let year = u32::try_from(t.year()).ok().filter(|year| *year <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, mut value: u32, digits: usize| {
            for place in (at..at + digits).rev() {
                out[place] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, year, 4);
        put(5, t.month(), 2);
        put(8, t.day(), 2);
        put(11, t.hour(), 2);
        put(14, t.minute(), 2);
        put(17, t.second(), 2);
        Some(out)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rendered() {
            Some(text) => f.write_str(std::str::from_utf8(&text).unwrap_or(EPOCH)),
            None => match chrono::DateTime::from_timestamp(self.0, 0) {
                Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%SZ")),
                None => f.write_str(EPOCH),
            },
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.rendered() {
            Some(text) => serializer.serialize_str(std::str::from_utf8(&text).unwrap_or(EPOCH)),
            None => serializer.collect_str(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_cloud_controller() {
        assert_eq!(Timestamp(1_444_757_503).to_string(), "2015-10-13T17:31:43Z");
        assert_eq!(
            serde_json::to_string(&Timestamp(0)).unwrap(),
            "\"1970-01-01T00:00:00Z\""
        );
    }

    #[test]
    fn renders_as_chronos_format_does() {
        let chrono_form = |seconds: i64| {
            chrono::DateTime::from_timestamp(seconds, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        };
        // Leap days, year and century ends, the last second of 9999, and a walk through
        // the years in prime steps so every field takes many values.
        let mut seconds = vec![
            0,
            951_782_400,
            4_107_542_399,
            253_402_300_799,
            -62_167_219_200,
        ];
        seconds.extend((0..20_000).map(|i| -2_000_000_000 + i * 10_000_019));
        for s in seconds {
            let t = Timestamp(s);
            assert_eq!(t.to_string(), chrono_form(s), "{s}");
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", chrono_form(s))
            );
        }
        // Past 9999 chrono's own form is kept.
        assert_eq!(
            Timestamp(253_402_300_800).to_string(),
            chrono_form(253_402_300_800)
        );
    }

    #[test]
    fn parses_the_filter_format_only() {
        assert_eq!(
            Timestamp::parse("2015-10-13T17:31:43Z"),
            Some(Timestamp(1_444_757_503))
        );
        assert_eq!(Timestamp::parse("1970-01-01T00:00:00Z"), Some(Timestamp(0)));
        for bad in [
            "",
            "2015-10-13",
            "2015-10-13T17:31:43",
            "2015-10-13T17:31:43.5Z",
            "2015-10-13T17:31:43+00:00",
            "2015-10-13 17:31:43Z",
            "2015-10-13t17:31:43z",
            "2015-02-30T00:00:00Z",
            "2015-10-13T24:00:00Z",
            "2015-10-13T17:31:43Z\n",
            "２015-10-13T17:31:43Z",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad:?}");
        }
    }
}
