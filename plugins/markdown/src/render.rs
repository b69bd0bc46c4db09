//! Markdown to HTML with pulldown-cmark, plus what the job result reports about the document:
//! its word count and headings (with anchor ids), and an optional table of contents.
//! Pure functions: no host calls, so everything here is unit-tested natively.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};
use serde::{Deserialize, Serialize};

/// A heading of the document, in order of appearance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heading {
    /// 1 to 6.
    pub level: u8,
    /// The heading's text without markup.
    pub text: String,
    /// Its anchor: the `{#id}` given in the source, or a slug of the text made unique.
    pub id: String,
}

/// What rendering produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub html: String,
    /// Words of prose and inline code (code blocks are not counted).
    pub words: usize,
    pub headings: Vec<Heading>,
}

/// How to render.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// Give headings `id` attributes and put a `<nav class="toc">` list of links first.
    pub toc: bool,
    /// Pass raw HTML in the source through. Off by default: it is escaped and shown as text,
    /// so rendering untrusted input cannot inject markup.
    pub allow_html: bool,
}

/// Render `markdown` (CommonMark plus tables, footnotes, strikethrough, task lists and
/// `{#id}` heading attributes).
pub fn render(markdown: &str, settings: Settings) -> Rendered {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES;
    let mut events: Vec<Event<'_>> = Parser::new_ext(markdown, options).collect();

    let mut prose = String::new();
    let mut in_code_block = false;
    let mut headings = Vec::new();
    // (index of the heading's Start event, level, explicit id, text so far)
    let mut open: Option<(usize, u8, Option<String>, String)> = None;
    let mut heading_starts = Vec::new();
    for (index, event) in events.iter().enumerate() {
        match event {
            Event::Start(Tag::Heading { level, id, .. }) => {
                open = Some((
                    index,
                    *level as u8,
                    id.as_ref().map(|id| id.to_string()),
                    String::new(),
                ));
            }
            Event::End(TagEnd::Heading(_)) => {
                prose.push(' ');
                if let Some((start, level, id, text)) = open.take() {
                    let text = text.trim().to_owned();
                    heading_starts.push(start);
                    headings.push((level, text, id));
                }
            }
            Event::Start(Tag::CodeBlock(_)) => in_code_block = true,
            Event::End(TagEnd::CodeBlock) => in_code_block = false,
            Event::Text(text) | Event::Code(text) if !in_code_block => {
                prose.push_str(text);
                if let Some((.., heading_text)) = open.as_mut() {
                    heading_text.push_str(text);
                }
            }
            Event::SoftBreak | Event::HardBreak => prose.push(' '),
            Event::End(end) if is_block(end) => prose.push(' '),
            _ => {}
        }
    }

    let headings = assign_ids(headings);
    if settings.toc {
        for (start, heading) in heading_starts.iter().zip(&headings) {
            if let Event::Start(Tag::Heading { id, .. }) = &mut events[*start] {
                *id = Some(CowStr::from(heading.id.clone()));
            }
        }
    }
    if !settings.allow_html {
        for event in &mut events {
            if let Event::Html(raw) | Event::InlineHtml(raw) = event {
                *event = Event::Text(std::mem::replace(raw, CowStr::Borrowed("")));
            }
        }
    }

    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    if settings.toc && !headings.is_empty() {
        html.push_str(&toc_html(&headings));
    }
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    Rendered {
        html,
        words: prose.split_whitespace().count(),
        headings,
    }
}

/// Ends after which the next text is a new word.
fn is_block(end: &TagEnd) -> bool {
    matches!(
        end,
        TagEnd::Paragraph
            | TagEnd::BlockQuote(_)
            | TagEnd::HtmlBlock
            | TagEnd::List(_)
            | TagEnd::Item
            | TagEnd::FootnoteDefinition
            | TagEnd::DefinitionListTitle
            | TagEnd::DefinitionListDefinition
            | TagEnd::TableCell
    )
}

/// Explicit ids are kept; others are slugs of the text, suffixed `-1`, `-2`... when taken.
fn assign_ids(headings: Vec<(u8, String, Option<String>)>) -> Vec<Heading> {
    let mut taken: Vec<String> = headings
        .iter()
        .filter_map(|(_, _, id)| id.clone())
        .collect();
    headings
        .into_iter()
        .map(|(level, text, id)| {
            let id = id.unwrap_or_else(|| {
                let base = slug(&text);
                let mut candidate = base.clone();
                let mut n = 0;
                while taken.contains(&candidate) {
                    n += 1;
                    candidate = format!("{base}-{n}");
                }
                taken.push(candidate.clone());
                candidate
            });
            Heading { level, text, id }
        })
        .collect()
}

/// Lowercase letters and digits, with runs of anything else turned into one `-`.
fn slug(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    if slug.is_empty() {
        "section".to_owned()
    } else {
        slug
    }
}

/// Nested `<ul>` lists following the heading levels.
fn toc_html(headings: &[Heading]) -> String {
    let mut html = String::from("<nav class=\"toc\">\n");
    let mut open_levels: Vec<u8> = Vec::new();
    for heading in headings {
        while open_levels
            .last()
            .is_some_and(|&level| level > heading.level)
        {
            html.push_str("</li>\n</ul>\n");
            open_levels.pop();
        }
        if open_levels.last() == Some(&heading.level) {
            html.push_str("</li>\n");
        } else {
            html.push_str("<ul>\n");
            open_levels.push(heading.level);
        }
        html.push_str("<li><a href=\"#");
        escape_into(&mut html, &heading.id);
        html.push_str("\">");
        escape_into(&mut html, &heading.text);
        html.push_str("</a>");
    }
    for _ in open_levels {
        html.push_str("</li>\n</ul>\n");
    }
    html.push_str("</nav>\n");
    html
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_commonmark_and_counts_prose_words() {
        let out = render(
            "# Title\n\nSome *emph*asis and `code`.\n\n```\nnot counted\n```\n",
            Settings::default(),
        );
        assert_eq!(
            out.html,
            "<h1>Title</h1>\n<p>Some <em>emph</em>asis and <code>code</code>.</p>\n<pre><code>not counted\n</code></pre>\n"
        );
        assert_eq!(out.words, 5); // Title, Some, emphasis, and, code.
    }

    #[test]
    fn headings_get_unique_slugs_and_keep_explicit_ids() {
        let out = render(
            "# Intro\n## Intro\n## Custom {#mine}\n### Q&A: why?\n",
            Settings::default(),
        );
        let ids: Vec<&str> = out.headings.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["intro", "intro-1", "mine", "q-a-why"]);
        assert_eq!(out.headings[3].level, 3);
        assert_eq!(out.headings[3].text, "Q&A: why?");
    }

    #[test]
    fn toc_links_nested_headings_and_ids_appear_in_the_html() {
        let out = render(
            "# A\n## B\n## C\n# D\n",
            Settings {
                toc: true,
                ..Settings::default()
            },
        );
        let expected_toc = "<nav class=\"toc\">\n<ul>\n<li><a href=\"#a\">A</a><ul>\n\
             <li><a href=\"#b\">B</a></li>\n<li><a href=\"#c\">C</a></li>\n</ul>\n</li>\n\
             <li><a href=\"#d\">D</a></li>\n</ul>\n</nav>\n";
        assert!(out.html.starts_with(expected_toc), "{}", out.html);
        assert!(out.html.contains("<h2 id=\"b\">B</h2>"));
    }

    #[test]
    fn raw_html_is_escaped_unless_allowed() {
        let source = "<script>alert(1)</script>\n\nhi <b>there</b>\n";
        let safe = render(source, Settings::default());
        assert!(!safe.html.contains("<script>"), "{}", safe.html);
        assert!(
            safe.html.contains("&lt;b&gt;there&lt;/b&gt;"),
            "{}",
            safe.html
        );
        let raw = render(
            source,
            Settings {
                allow_html: true,
                ..Settings::default()
            },
        );
        assert!(raw.html.contains("<script>alert(1)</script>"));
    }

    #[test]
    fn tables_and_task_lists_are_enabled() {
        let out = render("| a |\n|---|\n| b |\n\n- [x] done\n", Settings::default());
        assert!(out.html.contains("<table>"));
        assert!(out.html.contains("checkbox"));
    }
}
