// Builds {{name}}.wasm from src/plugin.js with componentize-js (a SpiderMonkey engine plus
// your code, pre-initialised): `node build.mjs` (`./build.sh` installs the packages first).
//
// Calls componentize() directly: `jco componentize` 1.35 cannot read a WIT folder on disk.
// `http` and `fetch-event` are disabled: plugins have no network, and the host does not link
// wasi:http.
import { componentize } from '@bytecodealliance/componentize-js';
import { rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

process.chdir(dirname(fileURLToPath(import.meta.url)));
const { component } = await componentize({
  sourcePath: 'src/plugin.js',
  witPath: 'wit/spool-plugin@0.1.0',
  worldName: 'handler',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile('{{name}}.wasm.tmp', component);
await rename('{{name}}.wasm.tmp', '{{name}}.wasm');
console.log(`built {{name}}.wasm (${component.length} bytes)`);
