// load one entry point as require() or import() would, then wait briefly for
// the timers it starts. Usage: node load.js ENTRY require|import
'use strict';
require('./missing.js');
const entry = process.argv[2];
const mode = process.argv[3] || 'require';
const settle = (() => { try { return Number(require('./options.json').settle) || 1500; } catch (e) { return 1500; } })();
const wait = require('./settle.js');
let waiting = false;
function done() { if (!waiting) { waiting = true; wait(Math.min(300, settle), settle * 3, () => process.exit(0)); } }
if (mode === 'import') {
  import(require('url').pathToFileURL(entry).href).then(done, (e) => { console.error(String(e && e.stack || e)); done(); });
} else {
  try { require(entry); } catch (e) {
    if (e && e.code === 'ERR_REQUIRE_ESM') {
      import(require('url').pathToFileURL(entry).href).then(done, (err) => { console.error(String(err)); done(); });
      return;
    }
    console.error(String(e && e.stack || e));
  }
  done();
}
setTimeout(() => process.exit(0), settle * 3 + 8000).unref();
