import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';

const out = process.argv[2] || '../js.wasm';
const disable = (process.argv[3] ?? 'http,fetch-event').split(',').filter(Boolean);
const t0 = performance.now();
const { component, imports, exports } = await componentize({
  sourcePath: resolve('app.js'),
  witPath: resolve('../wit'),
  worldName: 'dispatcher',
  disableFeatures: disable,
});
const t1 = performance.now();
await writeFile(out, component);
console.log(`built ${out}: ${component.length} bytes in ${((t1 - t0) / 1000).toFixed(2)} s; disableFeatures=${JSON.stringify(disable)}`);
console.log('imports reported:', JSON.stringify(imports));
console.log('exports reported:', JSON.stringify(exports));
