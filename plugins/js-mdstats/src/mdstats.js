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
  // The text whose words count, one entry per line: counted once at the end (a line break
  // separates words as any space does), one regular expression run instead of one per line.
  const texts = [];
  let fence = null; // the open fence's character and length, e.g. { ch: '`', len: 3 }

  const lines = markdown.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const rawLine = lines[n];
    if (rawLine === '') continue; // no block starts, no words, an open fence stays open
    const line = stripBlockMarkers(rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine);
    // Each block rule starts with one character after at most three spaces: look at that
    // character before running the rule's regular expression (SpiderMonkey interprets both
    // the script and the expressions inside WebAssembly, so skipped ones are most of the win).
    const lead = leadingChar(line);
    const fenceMatch = lead === '`' || lead === '~' ? /^ {0,3}(`{3,}|~{3,})(.*)$/.exec(line) : null;
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

    if ((lead === '-' || lead === '*' || lead === '_') && /^ {0,3}([-*_])( *\1){2,} *$/.test(line)) {
      continue; // thematic break
    }
    const heading = lead === '#' ? /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$/.exec(line) : null;
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
      texts.push(text);
      headings.push({ level: heading[1].length, text, id });
      continue;
    }
    texts.push(inlineText(line));
  }
  return { words: countWords(texts.join('\n')), headings: assignIds(headings) };
}

/** The first character of `line` after at most three spaces ('' when there is none). */
function leadingChar(line) {
  let i = 0;
  while (i < 3 && line[i] === ' ') i++;
  return i < line.length ? line[i] : '';
}

/** Drop block-quote markers, list markers and task-list boxes in front of a line. */
function stripBlockMarkers(line) {
  let rest = line;
  for (;;) {
    const quote = leadingChar(rest) === '>' ? /^ {0,3}> ?/.exec(rest) : null;
    if (quote) {
      rest = rest.slice(quote[0].length);
      continue;
    }
    if (!startsLikeListItem(rest)) return rest;
    const item = /^[ \t]*(?:[-+*]|\d{1,9}[.)])(?:[ \t]+|$)/.exec(rest);
    if (item && !/^ {0,3}([-*_])( *\1){2,} *$/.test(rest)) {
      rest = rest.slice(item[0].length).replace(/^\[[ xX]\](?:[ \t]+|$)/, '');
      continue;
    }
    return rest;
  }
}

/** Whether `line`, after spaces and tabs, starts with a list marker's first character. */
function startsLikeListItem(line) {
  let i = 0;
  while (line[i] === ' ' || line[i] === '\t') i++;
  const c = line[i];
  return c === '-' || c === '+' || c === '*' || (c >= '0' && c <= '9');
}

/** The characters that start inline markup; text between them is copied as it is. */
const INLINE_MARKUP = /[\\`*_~!\[\]]/g;

/** The text of inline markup: code spans, emphasis, links and escapes reduced to their words. */
function inlineText(source) {
  let out = '';
  let i = 0;
  while (i < source.length) {
    // Copy the plain run up to the next markup character in one slice.
    INLINE_MARKUP.lastIndex = i;
    const next = INLINE_MARKUP.exec(source);
    const stop = next ? next.index : source.length;
    if (stop > i) {
      out += source.slice(i, stop);
      i = stop;
      if (i >= source.length) break;
    }
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
      // A delimiter touches text on one side; `_` inside a word and `~` alone are literal.
      const delimiter = !(isSpace(before) && isSpace(after))
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

/** Whether `c` is white space as `\s` means it (ASCII answered without a regular expression). */
function isSpace(c) {
  if (c < '\x80') return c === ' ' || (c >= '\t' && c <= '\r');
  return /\s/.test(c);
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
  if (c < '\x80') return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
  const code = c.codePointAt(0);
  return !/\s/.test(c)
    && !(code >= 0xa0 && code <= 0xbf) && code !== 0xd7 && code !== 0xf7
    && !(code >= 0x2000 && code <= 0x206f) && !(code >= 0x3000 && code <= 0x303f);
}

/** Lowercase letters and digits, with runs of anything else turned into one `-`. */
export function slug(text) {
  const lower = text.toLowerCase();
  let out = '';
  let dash = false; // whether `out` ends with the `-` of a run
  for (let i = 0; i < lower.length;) {
    // One code point: a surrogate pair is one character.
    let c = lower[i];
    if (c >= '\ud800' && c <= '\udbff' && lower[i + 1] >= '\udc00' && lower[i + 1] <= '\udfff') {
      c += lower[i + 1];
    }
    i += c.length;
    if (isWordChar(c)) {
      out += c;
      dash = false;
    } else if (out !== '' && !dash) {
      out += '-';
      dash = true;
    }
  }
  if (dash) out = out.slice(0, -1);
  return out === '' ? 'section' : out;
}

/**
 * FNV-1a (64 bit) of the UTF-8 bytes of `text`, as 16 hex digits: the cache key.
 *
 * StarlingMonkey interprets JavaScript (there is no JIT inside WebAssembly), where BigInt
 * arithmetic allocates and every `Math` call is a call into the engine; so the hash runs on
 * two 32-bit halves in plain doubles, each product below 2^53 and so exact. The prime is
 * 2^40 + 0x1b3: `hash * prime` is `hash * 0x1b3 + (hash << 40)`, so the high half gets the
 * low half's carry and the low half shifted up by 8 (`>>> 0` keeps each half's low 32 bits).
 */
export function fnv1a64(text) {
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  const bytes = new TextEncoder().encode(text);
  for (let i = 0; i < bytes.length; i++) {
    const x = (lo ^ bytes[i]) >>> 0;
    const low = x * 0x1b3;
    lo = low >>> 0;
    hi = (hi * 0x1b3 + (low - lo) / 0x100000000 + x * 0x100) >>> 0;
  }
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}
