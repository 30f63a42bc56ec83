//! Editing a manifest's text in place: setting `enabled:` and nothing else.
//!
//! The admin endpoint's `?persist=true` writes an operator's enable or
//! disable into `plugin.yaml`. The file is the author's: its comments, key
//! order, quoting and blank lines stay as they are. Only the value of the
//! top-level `enabled` key changes, or, when the key is not written, one line
//! `enabled: …` goes in after `version:`. The result is parsed again and must
//! say what was asked, so an edit can never leave a broken manifest. Pure.

use std::path::{Path, PathBuf};

use super::{ManifestError, Position, parse};

/// Why `enabled:` could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The manifest has errors: its first one.
    #[error("cannot edit a manifest that does not parse: {0}")]
    DoesNotParse(ManifestError),
    /// Its layout is not one this edit rewrites.
    #[error("{}: cannot set `enabled`: {why}", file.display())]
    Layout {
        /// The manifest.
        file: PathBuf,
        /// What is in the way.
        why: &'static str,
    },
    /// The edited text would not say what was asked.
    #[error("{}: cannot set `enabled` without rewriting the file by hand", .0.display())]
    Unverified(PathBuf),
}

/// Returns `text` with the top-level `enabled` set to `enabled`.
///
/// `file` only names the manifest in errors. Fails, leaving nothing to
/// write, when the manifest does not parse or its layout is one this edit
/// does not rewrite (a flow mapping, a value on the next line).
pub fn set_enabled(file: &Path, text: &str, enabled: bool) -> Result<String, EditError> {
    let manifest = parse(file, text).map_err(|mut errors| {
        let first = errors.swap_remove(0);
        EditError::DoesNotParse(first)
    })?;
    let layout = |why| EditError::Layout {
        file: file.to_owned(),
        why,
    };
    if manifest.enabled == enabled && manifest.positions.get("enabled").is_some() {
        return Ok(text.to_owned());
    }
    let word = if enabled { "true" } else { "false" };
    let edited = match manifest.positions.get("enabled") {
        Some(at) => replace_value(text, at, word),
        None => {
            let version = manifest
                .positions
                .get("version")
                .ok_or_else(|| layout("the manifest has no `version:` line"))?;
            insert_after(text, version, &format!("enabled: {word}"))
        }
    }
    .map_err(layout)?;
    match parse(file, &edited) {
        Ok(m) if m.enabled == enabled => Ok(edited),
        _ => Err(EditError::Unverified(file.to_owned())),
    }
}

/// Replaces the plain scalar after the key at `at` (`enabled: VALUE`).
fn replace_value(text: &str, at: Position, word: &str) -> Result<String, &'static str> {
    if at.column != 1 {
        return Err("`enabled` is not a top-level key on a line of its own");
    }
    let (start, line) = line_at(text, at.line).ok_or("the key's line is missing")?;
    let rest = line
        .strip_prefix("enabled")
        .ok_or("the key is not written as `enabled`")?;
    let after_colon = rest
        .trim_start_matches([' ', '\t'])
        .strip_prefix(':')
        .ok_or("no `:` after the key")?;
    let gap = after_colon.len() - after_colon.trim_start_matches([' ', '\t']).len();
    let value_start = start + line.len() - after_colon.len() + gap;
    let value = &text[value_start..start + line.len()];
    let value_len = value
        .find(|c: char| c.is_whitespace() || c == '#')
        .unwrap_or(value.len());
    if value_len == 0 {
        return Err("the value is not on the key's line");
    }
    let mut out = String::with_capacity(text.len() + 1);
    out.push_str(&text[..value_start]);
    out.push_str(word);
    out.push_str(&text[value_start + value_len..]);
    Ok(out)
}

/// Inserts `line` after the line of the top-level key at `after`.
fn insert_after(text: &str, after: Position, line: &str) -> Result<String, &'static str> {
    if after.column != 1 {
        return Err("`version` is not a top-level key on a line of its own");
    }
    let (start, content) = line_at(text, after.line).ok_or("the `version:` line is missing")?;
    let end = start + content.len();
    let newline = if text[..start].ends_with("\r\n") || text[end..].starts_with("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = String::with_capacity(text.len() + line.len() + 2);
    out.push_str(&text[..end]);
    out.push_str(newline);
    out.push_str(line);
    out.push_str(&text[end..]);
    Ok(out)
}

/// The byte offset and the text (without its line break) of 1-based line `n`.
fn line_at(text: &str, n: usize) -> Option<(usize, &str)> {
    let mut start = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i + 1 == n {
            let content = line.strip_suffix('\n').unwrap_or(line);
            let content = content.strip_suffix('\r').unwrap_or(content);
            return Some((start, content));
        }
        start += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str, enabled: bool) -> Result<String, String> {
        set_enabled(Path::new("p/plugin.yaml"), text, enabled).map_err(|e| e.to_string())
    }

    #[test]
    fn the_value_changes_and_comments_stay() {
        let text = "# the greeter\nname: g  # its name\nversion: 1.0.0\nenabled:   true   # on by default\nconfig: {a: 1}\n";
        assert_eq!(
            set(text, false).unwrap(),
            "# the greeter\nname: g  # its name\nversion: 1.0.0\nenabled:   false   # on by default\nconfig: {a: 1}\n"
        );
        let back = set(&set(text, false).unwrap(), true).unwrap();
        assert_eq!(back, text);
    }

    #[test]
    fn a_missing_key_goes_in_after_version() {
        let text = "name: g\nversion: 1.0.0 # semver\n\n# settings\nconfig: {}\n";
        assert_eq!(
            set(text, false).unwrap(),
            "name: g\nversion: 1.0.0 # semver\nenabled: false\n\n# settings\nconfig: {}\n"
        );
        // The default already holds, but the operator asked for it written.
        assert_eq!(
            set(text, true).unwrap(),
            "name: g\nversion: 1.0.0 # semver\nenabled: true\n\n# settings\nconfig: {}\n"
        );
        assert_eq!(
            set("name: g\nversion: 1.0.0", false).unwrap(),
            "name: g\nversion: 1.0.0\nenabled: false"
        );
    }

    #[test]
    fn crlf_files_keep_their_line_breaks() {
        assert_eq!(
            set("name: g\r\nversion: 1.0.0\r\n", false).unwrap(),
            "name: g\r\nversion: 1.0.0\r\nenabled: false\r\n"
        );
        assert_eq!(
            set("name: g\r\nenabled: true\r\nversion: 1.0.0\r\n", false).unwrap(),
            "name: g\r\nenabled: false\r\nversion: 1.0.0\r\n"
        );
    }

    #[test]
    fn an_unchanged_value_is_the_same_text() {
        let text = "name: g\nversion: 1.0.0\nenabled: false # off\n";
        assert_eq!(set(text, false).unwrap(), text);
    }

    #[test]
    fn layouts_it_cannot_rewrite_are_refused() {
        let flow = "{name: g, version: 1.0.0, enabled: true}\n";
        assert!(set(flow, false).unwrap_err().contains("top-level"));
        let next_line = "name: g\nversion: 1.0.0\nenabled:\n  true\n";
        assert!(
            set(next_line, false)
                .unwrap_err()
                .contains("not on the key's line")
        );
        let broken = "name: g\nversion: one\n";
        assert!(set(broken, false).unwrap_err().contains("does not parse"));
    }
}
