//! `plughost tap PATTERN…`: a running host's bus events on stdout.
//!
//! It reads the admin endpoint's `GET /stream?topics=…` (SPEC §15) and
//! prints each event's JSON as one line, exactly as `run --tap` does,
//! flushing once per batch read (whatever arrived together). A malformed
//! pattern is a usage error, found before anything is sent. Events the
//! host dropped because this reader was slow are reported on stderr. It
//! ends with the stream: `Ok` when the host ends it (shutdown) or stdout
//! is closed (`| head`), an error when the host cannot be reached or the
//! connection breaks.

use std::io::{BufRead, BufReader, Write};

use super::client::{Client, ClientError};

/// One line of a Server-Sent Events stream, as far as `tap` cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// `data: …`: an event's JSON.
    Data(&'a str),
    /// `: lost N events`: the host dropped N events for this reader.
    Lost(u64),
    /// Anything else: keep-alives, other fields, blank separators.
    Other,
}

/// What `line` (without its line ending) is.
pub fn parse_line(line: &str) -> Line<'_> {
    if let Some(data) = line.strip_prefix("data:") {
        return Line::Data(data.strip_prefix(' ').unwrap_or(data));
    }
    if let Some(n) = line
        .strip_prefix(": lost ")
        .and_then(|rest| rest.strip_suffix(" events"))
        .and_then(|n| n.parse().ok())
    {
        return Line::Lost(n);
    }
    Line::Other
}

/// Prints the events matching `patterns` until the stream ends.
pub fn run(client: &Client, patterns: &[String]) -> Result<(), ClientError> {
    // A malformed pattern is a usage error, found before anything is sent.
    for pattern in patterns {
        crate::topic::Pattern::parse(pattern).map_err(|e| ClientError::Usage(e.to_string()))?;
    }
    let response = client.event_stream(patterns)?;
    let mut reader = BufReader::with_capacity(64 * 1024, response);
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| ClientError::Failed(format!("the event stream broke off: {e}")))?;
        if read == 0 {
            // The host ended the stream: it is shutting down.
            let _ = out.flush();
            return Ok(());
        }
        let written = match parse_line(line.trim_end_matches(['\r', '\n'])) {
            Line::Data(json) => out
                .write_all(json.as_bytes())
                .and_then(|()| out.write_all(b"\n")),
            Line::Lost(n) => {
                eprintln!("plughost: tap: the host dropped {n} events: this reader was too slow");
                Ok(())
            }
            Line::Other => Ok(()),
        };
        // A batch ends where nothing more has arrived yet.
        let flushed = written.and_then(|()| {
            if reader.buffer().is_empty() {
                out.flush()
            } else {
                Ok(())
            }
        });
        if flushed.is_err() {
            // stdout closed (`| head`): the reader has what it wanted.
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_data_losses_and_ignores_the_rest() {
        assert_eq!(
            parse_line(r#"data: {"id":"1"}"#),
            Line::Data(r#"{"id":"1"}"#)
        );
        assert_eq!(parse_line("data:{}"), Line::Data("{}"));
        assert_eq!(parse_line(": lost 12 events"), Line::Lost(12));
        assert_eq!(parse_line(":"), Line::Other);
        assert_eq!(parse_line(": lost many events"), Line::Other);
        assert_eq!(parse_line("event: overview"), Line::Other);
        assert_eq!(parse_line(""), Line::Other);
    }
}
