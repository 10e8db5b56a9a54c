// Builds web/dist: index.html, app.js, app.css (minified, deterministic).
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.js' },
  bundle: true,
  format: 'esm',
  minify: true,
  target: ['es2020'],
  outdir: 'dist',
  legalComments: 'eof',
  charset: 'utf8',
  sourcemap: false,
  metafile: false,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"', __DEV__: 'false' },
});
copyFileSync(join(here, 'index.html'), join(dist, 'index.html'));

let total = 0;
for (const f of readdirSync(dist).sort()) {
  const n = statSync(join(dist, f)).size;
  total += n;
  console.log(`${f.padEnd(12)} ${n.toString().padStart(9)} bytes`);
}
console.log(`${'total'.padEnd(12)} ${total.toString().padStart(9)} bytes`);
