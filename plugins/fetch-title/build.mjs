// Builds the component: node build.mjs [OUT] (default: fetch-title.wasm here).
//
// Calls componentize() from @bytecodealliance/componentize-js directly: `jco componentize`
// 1.35 cannot read a WIT folder on disk. Unlike the 0.1.0 examples, the `http` feature stays
// on: it is what makes the `fetch` global work, on the wasi:http/outgoing-handler import of
// contract 0.2.0. `fetch-event` (serving incoming requests) stays off: a plugin exports
// `handle` only.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, 'fetch-title.wasm'));
const witPath = process.env.SPOOL_WIT ?? resolve(here, '../../wit/spool-plugin@0.2.0');

process.chdir(here);
const { component } = await componentize({
  sourcePath: 'src/plugin.js',
  witPath,
  worldName: 'handler',
  disableFeatures: ['fetch-event'],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(`${out}.tmp`, component);
await rename(`${out}.tmp`, out);
console.log(`built ${out} (${component.length} bytes)`);
