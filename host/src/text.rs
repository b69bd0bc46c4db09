//! Text from plugins and requests shown on terminals and in logs: control characters are
//! escaped so that a job's error, log line or progress message cannot move the cursor, set
//! the terminal's title or forge a line of the daemon's own log.

use std::borrow::Cow;

/// `text` with control characters (C0, DEL, C1) and bidirectional overrides written as
/// escapes: `\n`, `\r`, `\t`, else `\u{1b}`. Borrowed when there is nothing to escape.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(escape_control("plain: ü ok"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("a\u{1b}]0;t\u{7}\nb\r\t\u{9b}\u{202e}"),
            "a\\u{1b}]0;t\\u{7}\\nb\\r\\t\\u{9b}\\u{202e}"
        );
    }
}
