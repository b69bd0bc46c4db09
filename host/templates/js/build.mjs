// Builds {{name}}.wasm from src/plugin.js with componentize-js (a SpiderMonkey engine plus
// your code, pre-initialised): `node build.mjs` (`./build.sh` installs the packages first).
//
// Calls componentize() directly: `jco componentize` 1.35 cannot read a WIT folder on disk.
// The `http` feature stays on: it makes `fetch` work, on contract 0.2.0's
// wasi:http/outgoing-handler import (requests go only to the manifest's `allowed_hosts`).
// `fetch-event` (serving incoming requests) is disabled: a plugin exports `handle` only.
import { componentize } from '@bytecodealliance/componentize-js';
import { rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

process.chdir(dirname(fileURLToPath(import.meta.url)));
const { component } = await componentize({
  sourcePath: 'src/plugin.js',
  witPath: 'wit/spool-plugin@0.2.0',
  worldName: 'handler',
  disableFeatures: ['fetch-event'],
});
await writeFile('{{name}}.wasm.tmp', component);
await rename('{{name}}.wasm.tmp', '{{name}}.wasm');
console.log(`built {{name}}.wasm (${component.length} bytes)`);
