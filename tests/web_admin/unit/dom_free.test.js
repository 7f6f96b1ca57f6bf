// The client modules touch nothing of the page or the host: no DOM, no browser globals, and no
// real timers, clock, socket or fetch (Node has those too, so only reading the source shows a
// module reaching for them instead of using what it was handed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CLIENT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../web_admin/js/client');

const FORBIDDEN = [
  [/\b(window|document|navigator|location|localStorage|sessionStorage|globalThis|self)\b/, 'a browser global'],
  [/\b(requestAnimationFrame|cancelAnimationFrame|addEventListener|alert)\s*\(/, 'a browser API'],
  [/(^|[^.\w])(setTimeout|clearTimeout|setInterval|clearInterval|queueMicrotask|setImmediate)\s*\(/, 'a real timer'],
  [/(^|[^.\w])fetch\s*\(/, 'the real fetch'],
  [/new\s+WebSocket\b/, 'the real WebSocket'],
  [/\bDate\.now\s*\(|new\s+Date\s*\(\s*\)/, 'the real clock'],
  [/\brequire\s*\(|\bprocess\./, 'Node-only code'],
];

/** The source without comments and string contents (a URL's // is not a comment). */
function code(src) {
  return src
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"/g, "''")
    .replace(/`(?:[^`\\]|\\.)*`/g, (t) => t.replace(/[^`$\{\}]+/g, ' '))
    .replace(/\/\/.*$/gm, '');
}

const files = fs.readdirSync(CLIENT).filter((f) => f.endsWith('.js'));

test('there are client modules to check', () => {
  assert.ok(files.includes('console.js') && files.includes('connection.js') && files.length >= 8, files.join(', '));
});

for (const file of files) {
  test(`client/${file} uses only what it is handed`, async () => {
    const lines = code(fs.readFileSync(path.join(CLIENT, file), 'utf8')).split('\n');
    for (const [pattern, what] of FORBIDDEN) {
      const hit = lines.findIndex((l) => pattern.test(l));
      assert.equal(hit, -1, `${file}:${hit + 1} uses ${what}: ${lines[hit]?.trim()}`);
    }
    await import(path.join(CLIENT, file)); // and it loads where there is no DOM at all
  });
}

test('the checker itself catches what it looks for', () => {
  const bad = ['document.title = 1', 'setTimeout(f, 1)', 'const r = await fetch(u)', 'new WebSocket(u)', 'Date.now()'];
  for (const line of bad) assert.ok(FORBIDDEN.some(([p]) => p.test(code(line))), line);
  const fine = ['this.clock.setTimeout(f, 1)', "const u = 'ws://host/ws'; // window", 'new this.WebSocket(u)', 'doFetch(url)'];
  for (const line of fine) assert.ok(!FORBIDDEN.some(([p]) => p.test(code(line))), line);
});
