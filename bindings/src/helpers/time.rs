//! `time.now_ms()`, `time.format(ms [, fmt])` and `time.parse(text [, fmt])`:
//! milliseconds since the Unix epoch, shown and read in UTC.
//!
//! Without a format, text is RFC 3339 with milliseconds (`2024-05-01T12:00:00.000Z`)
//! and parsing takes any RFC 3339 time, honouring its offset. A format is
//! strftime-style (`%Y-%m-%d %H:%M`), handled by jiff's `strtime`, which
//! answers a bad directive with an error rather than a panic. Text parsed
//! with a format that names no offset is taken as UTC; `%s` reads seconds
//! since the epoch.

use jiff::Timestamp;
use jiff::fmt::strtime;
use jiff::tz::Offset;

use super::HelperError;

/// The longest format accepted: a directive's width is at most 255, so the
/// text a format makes stays within a few hundred kilobytes.
pub(crate) const MAX_FORMAT: usize = 1024;

/// The default format: RFC 3339 in UTC with milliseconds.
const RFC3339_MS: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// The wall clock: milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// `ms` since the epoch as text in UTC: RFC 3339 with milliseconds, or as
/// `fmt` says.
pub(crate) fn format(helper: &str, ms: i64, fmt: Option<&str>) -> Result<String, HelperError> {
    let fail = |message: String| HelperError::Time {
        helper: helper.to_owned(),
        message,
    };
    let fmt = checked_format(fmt, fail)?;
    let ts = Timestamp::from_millisecond(ms)
        .map_err(|_| fail(format!("{ms} ms is out of the supported range of times")))?;
    strtime::format(fmt, ts).map_err(|e| fail(format!("bad format {fmt:?}: {e}")))
}

/// `text` as ms since the epoch: RFC 3339 (offset honoured), or as `fmt`
/// says (UTC unless the format reads an offset).
pub(crate) fn parse(helper: &str, text: &str, fmt: Option<&str>) -> Result<i64, HelperError> {
    let fail = |message: String| HelperError::Time {
        helper: helper.to_owned(),
        message,
    };
    let shown = shorten(text);
    let ts = match fmt {
        None => text
            .parse::<Timestamp>()
            .map_err(|e| fail(format!("{shown:?} is not an RFC 3339 time: {e}")))?,
        Some(_) => {
            let fmt = checked_format(fmt, fail)?;
            let parsed = strtime::parse(fmt, text)
                .map_err(|e| fail(format!("{shown:?} does not match {fmt:?}: {e}")))?;
            // `%s` reads seconds since the epoch: an instant of its own,
            // with no calendar date to build.
            if let Some(ts) = parsed.timestamp() {
                return Ok(ts.as_millisecond());
            }
            let dt = parsed
                .to_datetime()
                .map_err(|e| fail(format!("{shown:?} does not name a time: {e}")))?;
            parsed
                .offset()
                .unwrap_or(Offset::UTC)
                .to_timestamp(dt)
                .map_err(|e| fail(format!("{shown:?} is out of range: {e}")))?
        }
    };
    Ok(ts.as_millisecond())
}

/// The format to use: the default, or `fmt` when it is not too long (else
/// the message saying so, for `fail`).
fn checked_format<E>(fmt: Option<&str>, fail: impl Fn(String) -> E) -> Result<&str, E> {
    match fmt {
        None => Ok(RFC3339_MS),
        Some(f) if f.len() > MAX_FORMAT => Err(fail(format!(
            "the format is {} bytes long, more than {MAX_FORMAT}",
            f.len()
        ))),
        Some(f) => Ok(f),
    }
}

/// At most 64 characters of `text`, for messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_utc_with_milliseconds_by_default() {
        assert_eq!(
            format("time.format", 1_714_564_800_123, None).unwrap(),
            "2024-05-01T12:00:00.123Z"
        );
        assert_eq!(format("t", 0, None).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format("t", 1_714_564_800_123, Some("%Y/%m/%d %H:%M")).unwrap(),
            "2024/05/01 12:00"
        );
    }

    #[test]
    fn parses_rfc3339_honouring_offsets() {
        assert_eq!(
            parse("t", "2024-05-01T12:00:00.123Z", None).unwrap(),
            1_714_564_800_123
        );
        assert_eq!(
            parse("t", "2024-05-01T14:00:00+02:00", None).unwrap(),
            1_714_564_800_000
        );
        let err = parse("time.parse", "yesterday", None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("time.parse: \"yesterday\" is not an RFC 3339 time"),
            "{err}"
        );
    }

    #[test]
    fn parses_with_a_format_in_utc_unless_it_reads_an_offset() {
        assert_eq!(
            parse("t", "2024/05/01 12:00", Some("%Y/%m/%d %H:%M")).unwrap(),
            1_714_564_800_000
        );
        assert_eq!(
            parse("t", "2024/05/01 14:00 +0200", Some("%Y/%m/%d %H:%M %z")).unwrap(),
            1_714_564_800_000
        );
        assert_eq!(
            parse("t", "1714564800", Some("%s")).unwrap(),
            1_714_564_800_000
        );
        assert_eq!(
            parse("t", "-86400 UTC", Some("%s UTC")).unwrap(),
            -86_400_000
        );
        let err = parse("time.parse", "2024/05/xx", Some("%Y/%m/%d")).unwrap_err();
        assert!(
            err.to_string().contains("does not match \"%Y/%m/%d\""),
            "{err}"
        );
    }

    #[test]
    fn format_and_parse_round_trip() {
        for ms in [0, 1, 1_714_564_800_123, -86_400_000] {
            let text = format("t", ms, None).unwrap();
            assert_eq!(parse("t", &text, None).unwrap(), ms, "{text}");
        }
    }

    #[test]
    fn bad_formats_and_times_are_errors_not_panics() {
        for fmt in ["%J", "%", "%5", "%300Y"] {
            let err = match format("time.format", 0, Some(fmt)) {
                Err(e) => e,
                Ok(text) => panic!("{fmt:?} made {text:?}"),
            };
            assert!(
                err.to_string().starts_with("time.format: bad format"),
                "{fmt}: {err}"
            );
        }
        let long = "%Y".repeat(MAX_FORMAT);
        assert!(format("t", 0, Some(&long)).is_err());
        assert!(format("t", i64::MAX, None).is_err());
        assert!(parse("t", "2024", Some("%J")).is_err());
    }
}
