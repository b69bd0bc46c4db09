// Builds the component: node build.mjs [OUT] (default: js-mdstats.wasm here).
//
// Calls componentize() from @bytecodealliance/componentize-js directly: `jco componentize`
// 1.35 cannot read a WIT folder on disk. The `http` and `fetch-event` features are disabled:
// Spool plugins have no network, and the host does not link wasi:http.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, 'js-mdstats.wasm'));
const witPath = process.env.SPOOL_WIT ?? resolve(here, '../../wit/spool-plugin@0.1.0');

process.chdir(here);
const { component } = await componentize({
  sourcePath: 'src/plugin.js',
  witPath,
  worldName: 'handler',
  disableFeatures: ['http', 'fetch-event'],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(`${out}.tmp`, component);
await rename(`${out}.tmp`, out);
console.log(`built ${out} (${component.length} bytes)`);
