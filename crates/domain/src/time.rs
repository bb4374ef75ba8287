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

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match chrono::DateTime::from_timestamp(self.0, 0) {
            Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%SZ")),
            None => write!(f, "1970-01-01T00:00:00Z"),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
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
