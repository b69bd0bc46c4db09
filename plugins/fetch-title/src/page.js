// What `fetch-title` reads from a page: its title and the words of its visible text. Plain
// regular expressions, no DOM (the engine has none) and no ICU (no \p{L}): a word is a run of
// non-space characters holding a letter or digit, where any character above U+00BF counts as
// a letter.

// The named references pages use most; others are left as written.
const ENTITIES = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ',
  copy: '©', reg: '®', trade: '™', euro: '€', pound: '£', yen: '¥', sect: '§', deg: '°',
  middot: '·', bull: '•', hellip: '…', ndash: '–', mdash: '—',
  lsquo: '‘', rsquo: '’', ldquo: '“', rdquo: '”', laquo: '«', raquo: '»',
  aacute: 'á', agrave: 'à', acirc: 'â', auml: 'ä', aring: 'å', atilde: 'ã', aelig: 'æ',
  ccedil: 'ç', eacute: 'é', egrave: 'è', ecirc: 'ê', euml: 'ë',
  iacute: 'í', igrave: 'ì', icirc: 'î', iuml: 'ï', ntilde: 'ñ',
  oacute: 'ó', ograve: 'ò', ocirc: 'ô', ouml: 'ö', otilde: 'õ', oslash: 'ø',
  uacute: 'ú', ugrave: 'ù', ucirc: 'û', uuml: 'ü', yacute: 'ý', szlig: 'ß',
};

/** Decode the character references a title or text is likely to hold. */
export function decodeEntities(text) {
  return text.replace(/&(#[0-9]+|#x[0-9a-f]+|[a-z]+);/gi, (whole, name) => {
    if (name[0] === '#') {
      const code = name[1] === 'x' || name[1] === 'X'
        ? parseInt(name.slice(2), 16)
        : parseInt(name.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return ENTITIES[name] ?? ENTITIES[name.toLowerCase()]?.toUpperCase() ?? whole;
  });
}

function collapse(text) {
  return text.replace(/\s+/g, ' ').trim();
}

/** The text of the first <title> element, decoded and on one line; null when there is none. */
export function titleOf(html) {
  const match = /<title\b[^>]*>([\s\S]*?)<\/title\s*>/i.exec(html);
  if (!match) return null;
  const title = collapse(decodeEntities(match[1]));
  return title === '' ? null : title;
}

/** The visible text of a page: no head, comments, scripts, styles or tags. */
export function bodyText(html) {
  const text = html
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/<head\b[\s\S]*?<\/head\s*>/gi, ' ')
    .replace(/<(script|style|noscript|template|svg)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<[^>]*>/g, ' ');
  return decodeEntities(text);
}

/** The number of words in `text`. */
export function wordCount(text) {
  let words = 0;
  for (const token of text.split(/\s+/)) {
    if (/[0-9A-Za-z\u00c0-\uffff]/.test(token)) words += 1;
  }
  return words;
}
