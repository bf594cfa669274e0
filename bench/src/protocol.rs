//! The line protocol between the peer programs and the driver.
//!
//! A peer prints lines `TAG key=value key=value ...` on stdout. Values contain no spaces,
//! except the field `message`, which must come last and runs to the end of the line.
//!
//! Tags in use: `MODE` (what `corun::spawn` ran on), `PORT` (a server is listening),
//! `READY` (every idle task is asleep), `SPAWN_ERROR` and `CAPACITY` (a spawn failed),
//! `RESULT` (the measurement).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Write;

/// One parsed protocol line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The first word.
    pub tag: String,
    /// The `key=value` fields.
    pub fields: BTreeMap<String, String>,
}

impl Line {
    /// Parses a line; `None` for lines that are not protocol lines (no upper-case tag).
    pub fn parse(text: &str) -> Option<Line> {
        let text = text.trim_end();
        let (tag, mut rest) = text.split_once(' ').unwrap_or((text, ""));
        if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            return None;
        }
        let mut fields = BTreeMap::new();
        while !rest.is_empty() {
            rest = rest.trim_start();
            if let Some(message) = rest.strip_prefix("message=") {
                fields.insert("message".to_string(), message.to_string());
                break;
            }
            let (field, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some((key, value)) = field.split_once('=') {
                fields.insert(key.to_string(), value.to_string());
            }
            rest = tail;
        }
        Some(Line {
            tag: tag.to_string(),
            fields,
        })
    }

    /// The field `key` parsed as a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.fields.get(key)?.parse().ok()
    }

    /// The field `key` as text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

/// Prints one protocol line on stdout and flushes it, so the driver sees it at once.
///
/// A field named `message` must be the last one; line breaks in it become spaces.
pub fn emit(tag: &str, fields: &[(&str, &dyn Display)]) {
    let mut line = tag.to_string();
    for (key, value) in fields {
        let value = value.to_string();
        let value = if *key == "message" {
            value.replace(['\n', '\r'], " ")
        } else {
            value.replace(char::is_whitespace, "_")
        };
        line.push_str(&format!(" {key}={value}"));
    }
    let mut out = std::io::stdout().lock();
    // A peer whose driver went away has nobody to report to: ignore write errors.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::Line;

    #[test]
    fn parses_fields_and_a_trailing_message() {
        let line =
            Line::parse("SPAWN_ERROR spawned=32000 message=cannot map a stack: too many").unwrap();
        assert_eq!(line.tag, "SPAWN_ERROR");
        assert_eq!(line.number("spawned"), Some(32000.0));
        assert_eq!(line.text("message"), Some("cannot map a stack: too many"));
    }

    #[test]
    fn ignores_other_output() {
        assert_eq!(Line::parse("hello world"), None);
        assert_eq!(Line::parse(""), None);
        assert_eq!(
            Line::parse("PORT port=80").unwrap().number("port"),
            Some(80.0)
        );
    }
}
