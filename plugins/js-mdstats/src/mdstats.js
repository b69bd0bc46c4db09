// Markdown statistics: the word count and the headings (outline) of a Markdown document.
// Plain JavaScript, no packages: this file is also what the plugin's own tests import with
// `node --test` (it touches no host import), so the rules are checked without a component.
//
// The rules follow the Rust `markdown` plugin (pulldown-cmark) on a subset of CommonMark:
// ATX headings (`# Title`, optional closing `#`s, `{#id}` attributes), paragraphs, lists,
// task lists, block quotes, thematic breaks, fenced code blocks (not counted), code spans,
// emphasis, strikethrough, links and images (their text counts), backslash escapes. Not
// covered: setext headings, indented code blocks, raw HTML and entities.

/** Counts and headings of `markdown`: `{ words, headings: [{ level, text, id }] }`. */
export function analyze(markdown) {
  const headings = [];
  let words = 0;
  let fence = null; // the open fence's character and length, e.g. { ch: '`', len: 3 }

  for (const rawLine of markdown.split('\n')) {
    const line = stripBlockMarkers(rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine);
    const fenceMatch = /^ {0,3}(`{3,}|~{3,})(.*)$/.exec(line);
    if (fence) {
      if (fenceMatch && fenceMatch[1][0] === fence.ch && fenceMatch[1].length >= fence.len
          && fenceMatch[2].trim() === '') {
        fence = null;
      }
      continue;
    }
    if (fenceMatch && !(fenceMatch[1][0] === '`' && fenceMatch[2].includes('`'))) {
      fence = { ch: fenceMatch[1][0], len: fenceMatch[1].length };
      continue;
    }

    if (/^ {0,3}([-*_])( *\1){2,} *$/.test(line)) {
      continue; // thematic break
    }
    const heading = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$/.exec(line);
    if (heading) {
      let content = heading[2] ?? '';
      content = content.replace(/(^|[ \t]+)#+$/, '').trim(); // optional closing sequence
      let id = null;
      const attrs = /^(.*?)[ \t]*\{([^{}]*)\}$/.exec(content);
      if (attrs) {
        content = attrs[1];
        for (const token of attrs[2].trim().split(/\s+/)) {
          if (token.startsWith('#') && token.length > 1) id = token.slice(1);
        }
      }
      const text = inlineText(content).trim();
      words += countWords(text);
      headings.push({ level: heading[1].length, text, id });
      continue;
    }
    words += countWords(inlineText(line));
  }
  return { words, headings: assignIds(headings) };
}

/** Drop block-quote markers, list markers and task-list boxes in front of a line. */
function stripBlockMarkers(line) {
  let rest = line;
  for (;;) {
    const quote = /^ {0,3}> ?/.exec(rest);
    if (quote) {
      rest = rest.slice(quote[0].length);
      continue;
    }
    const item = /^[ \t]*(?:[-+*]|\d{1,9}[.)])(?:[ \t]+|$)/.exec(rest);
    if (item && !/^ {0,3}([-*_])( *\1){2,} *$/.test(rest)) {
      rest = rest.slice(item[0].length).replace(/^\[[ xX]\](?:[ \t]+|$)/, '');
      continue;
    }
    return rest;
  }
}

/** The text of inline markup: code spans, emphasis, links and escapes reduced to their words. */
function inlineText(source) {
  let out = '';
  let i = 0;
  while (i < source.length) {
    const c = source[i];
    if (c === '\\' && i + 1 < source.length && /[!-/:-@[-`{-~]/.test(source[i + 1])) {
      out += source[i + 1];
      i += 2;
    } else if (c === '`') {
      let run = 1;
      while (source[i + run] === '`') run++;
      const close = source.indexOf('`'.repeat(run), i + run);
      if (close < 0) {
        out += '`'.repeat(run);
        i += run;
      } else {
        out += source.slice(i + run, close);
        i = close + run;
      }
    } else if (c === '*' || c === '_' || c === '~') {
      let run = 1;
      while (source[i + run] === c) run++;
      const before = i > 0 ? source[i - 1] : ' ';
      const after = i + run < source.length ? source[i + run] : ' ';
      const space = (ch) => /\s/.test(ch);
      // A delimiter touches text on one side; `_` inside a word and `~` alone are literal.
      const delimiter = !(space(before) && space(after))
        && !(c === '_' && isWordChar(before) && isWordChar(after))
        && !(c === '~' && run === 1);
      if (!delimiter) out += c.repeat(run);
      i += run;
    } else if (c === '!' && source[i + 1] === '[') {
      i += 1; // an image: its alt text counts like a link's text
    } else if (c === '[' || c === ']') {
      if (c === ']' && source[i + 1] === '(') {
        const close = source.indexOf(')', i + 2);
        i = close < 0 ? i + 1 : close + 1;
      } else {
        i += 1;
      }
    } else {
      out += c;
      i += 1;
    }
  }
  return out;
}

function countWords(text) {
  const trimmed = text.trim();
  return trimmed === '' ? 0 : trimmed.split(/\s+/).length;
}

/** Explicit ids are kept; others are slugs of the text, suffixed `-1`, `-2`... when taken. */
function assignIds(headings) {
  const taken = headings.filter((h) => h.id !== null).map((h) => h.id);
  return headings.map(({ level, text, id }) => {
    if (id === null) {
      const base = slug(text);
      id = base;
      for (let n = 1; taken.includes(id); n++) id = `${base}-${n}`;
      taken.push(id);
    }
    return { level, text, id };
  });
}

/**
 * Letters and digits. StarlingMonkey has no Unicode property escapes (`\p{L}`), so outside
 * ASCII every character counts except spaces and the common punctuation blocks.
 */
function isWordChar(c) {
  const code = c.codePointAt(0);
  if (code < 0x80) return /[0-9A-Za-z]/.test(c);
  return !/\s/.test(c)
    && !(code >= 0xa0 && code <= 0xbf) && code !== 0xd7 && code !== 0xf7
    && !(code >= 0x2000 && code <= 0x206f) && !(code >= 0x3000 && code <= 0x303f);
}

/** Lowercase letters and digits, with runs of anything else turned into one `-`. */
export function slug(text) {
  let out = '';
  for (const c of text.toLowerCase()) {
    if (isWordChar(c)) {
      out += c;
    } else if (out !== '' && !out.endsWith('-')) {
      out += '-';
    }
  }
  out = out.replace(/-+$/, '');
  return out === '' ? 'section' : out;
}

/** FNV-1a (64 bit) of the UTF-8 bytes of `text`, as 16 hex digits: the cache key. */
export function fnv1a64(text) {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= BigInt(byte);
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, '0');
}
