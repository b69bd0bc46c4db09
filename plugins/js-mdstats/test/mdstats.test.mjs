// The Markdown rules and the cache key's hash, without a component: `node --test test/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyze, fnv1a64, slug } from '../src/mdstats.js';

/** FNV-1a 64 as its definition says, with BigInt: what the fast version must equal. */
function fnv1a64Reference(text) {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= BigInt(byte);
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, '0');
}

test('fnv1a64 gives the published FNV-1a 64 values', () => {
  assert.equal(fnv1a64(''), 'cbf29ce484222325');
  assert.equal(fnv1a64('a'), 'af63dc4c8601ec8c');
  assert.equal(fnv1a64('foobar'), '85944171f73967e8');
});

test('fnv1a64 equals the BigInt definition on ASCII, accents, CJK and emoji', () => {
  const samples = ['# Title\n\nbody', 'Café au lait', '日本語のテキスト', 'emoji 😀 and \u0000 nul',
    'x'.repeat(1000), '\u00ff\u0100\u07ff\u0800\uffff'];
  for (const s of samples) assert.equal(fnv1a64(s), fnv1a64Reference(s), JSON.stringify(s));
});

test('words and headings of a short document', () => {
  const doc = '# Title\n\nSome *emph*asis and `code`, a [link](https://example.com/x) and '
    + '**bold** words.\n\n## Second {#two}\n\n- item one\n- [x] done\n\n> quoted\n';
  assert.deepEqual(analyze(doc), {
    words: 15,
    headings: [
      { level: 1, text: 'Title', id: 'title' },
      { level: 2, text: 'Second', id: 'two' },
    ],
  });
});

test('fenced code does not count; closing hashes go; repeated titles get suffixed ids', () => {
  const doc = '```js\nlet x = 1;\n```\n\n## Café au lait ##\n\n1. _one_ two\n2) ~~three~~\n\n'
    + '---\n\n# Title\n# Title\n';
  assert.deepEqual(analyze(doc), {
    words: 8,
    headings: [
      { level: 2, text: 'Café au lait', id: 'café-au-lait' },
      { level: 1, text: 'Title', id: 'title' },
      { level: 1, text: 'Title', id: 'title-1' },
    ],
  });
});

test('quoted headings, CRLF line ends and escapes', () => {
  const doc = '> # Quoted *heading*\n\n   ### Üñí 😀 code `a`\r\nplain\\*text\\* here\n';
  assert.deepEqual(analyze(doc), {
    words: 8,
    headings: [
      { level: 1, text: 'Quoted heading', id: 'quoted-heading' },
      { level: 3, text: 'Üñí 😀 code a', id: 'üñí-😀-code-a' },
    ],
  });
});

test('slugs keep letters and digits of any script and join the rest with one dash', () => {
  assert.equal(slug('Ünïcode 😀 and 日本 -- Words!'), 'ünïcode-😀-and-日本-words');
  assert.equal(slug('!!!'), 'section');
});
