// load a browser/module entry with a minimal instrumented window and report
// every browser API the package replaced or wrapped.
// Usage: node browser.js ENTRY require|import [ENTRY require|import ...] (loaded in order)
'use strict';
require('./missing.js');
const fs = require('fs');
const statfs = fs.statfsSync;
function emit(kind, detail) {
  try {
    const data = Buffer.from(JSON.stringify({ kind: kind, detail: String(detail).slice(0, 400), pid: process.pid })).toString('base64url').slice(0, 3600);
    statfs('/.cw-ev/' + (data.match(/.{1,200}/g) || ['e30']).join('/'));
  } catch (e) { /* the path never exists */ }
}
const entries = [];
for (let i = 2; i + 1 < process.argv.length; i += 2) entries.push([process.argv[i], process.argv[i + 1]]);
const settle = (() => { try { return Number(require('./options.json').settle) || 1000; } catch (e) { return 1000; } })();
function stub(name) { const f = function () { return undefined; }; Object.defineProperty(f, 'name', { value: name }); return f; }
class XMLHttpRequest { open() {} send() {} setRequestHeader() {} addEventListener() {} }
class WebSocket { constructor() {} send() {} close() {} addEventListener() {} }
const listeners = [];
const document = {
  cookie: '', readyState: 'complete', title: '', location: { href: 'https://app.example.invalid/' },
  createElement: () => ({ style: {}, setAttribute() {}, appendChild() {}, addEventListener() {} }),
  getElementById: () => null, querySelector: () => null, querySelectorAll: () => [],
  addEventListener: (t) => listeners.push('document ' + t), removeEventListener() {},
  head: { appendChild() {} }, body: { appendChild() {} },
};
const ethereum = { isMetaMask: true, selectedAddress: '0x0000000000000000000000000000000000000001',
  request: stub('request'), send: stub('send'), sendAsync: stub('sendAsync'), on: stub('on') };
const solana = { isPhantom: true, connect: stub('connect'), signTransaction: stub('signTransaction'),
  signAllTransactions: stub('signAllTransactions'), signMessage: stub('signMessage') };
const window = globalThis;
const fakes = {
  window, self: window, document, fetch: stub('fetch'), XMLHttpRequest, WebSocket, ethereum, solana,
  navigator: { userAgent: 'Mozilla/5.0', clipboard: { writeText: stub('writeText'), readText: stub('readText') } },
  location: document.location, localStorage: { getItem: () => null, setItem() {}, removeItem() {} },
  addEventListener: (t) => listeners.push('window ' + t), removeEventListener() {},
};
for (const [k, v] of Object.entries(fakes)) {
  try { Object.defineProperty(globalThis, k, { value: v, writable: true, configurable: true }); } catch (e) { /* node's own */ }
}
const watched = {
  'window.fetch': () => globalThis.fetch,
  'window.XMLHttpRequest': () => globalThis.XMLHttpRequest,
  'XMLHttpRequest.prototype.open': () => globalThis.XMLHttpRequest && globalThis.XMLHttpRequest.prototype.open,
  'XMLHttpRequest.prototype.send': () => globalThis.XMLHttpRequest && globalThis.XMLHttpRequest.prototype.send,
  'XMLHttpRequest.prototype.setRequestHeader': () => globalThis.XMLHttpRequest && globalThis.XMLHttpRequest.prototype.setRequestHeader,
  'window.WebSocket': () => globalThis.WebSocket,
  'WebSocket.prototype.send': () => globalThis.WebSocket && globalThis.WebSocket.prototype.send,
  'window.ethereum': () => globalThis.ethereum,
  'ethereum.request': () => globalThis.ethereum && globalThis.ethereum.request,
  'ethereum.send': () => globalThis.ethereum && globalThis.ethereum.send,
  'ethereum.sendAsync': () => globalThis.ethereum && globalThis.ethereum.sendAsync,
  'window.solana': () => globalThis.solana,
  'solana.signTransaction': () => globalThis.solana && globalThis.solana.signTransaction,
  'solana.signAllTransactions': () => globalThis.solana && globalThis.solana.signAllTransactions,
  'solana.signMessage': () => globalThis.solana && globalThis.solana.signMessage,
  'navigator.clipboard.writeText': () => globalThis.navigator && globalThis.navigator.clipboard && globalThis.navigator.clipboard.writeText,
};
const before = {};
for (const [k, get] of Object.entries(watched)) { try { before[k] = get(); } catch (e) { before[k] = undefined; } }
function compare() {
  if (compared === 'done') return;
  compared = 'done';
  for (const [k, get] of Object.entries(watched)) {
    let now;
    try { now = get(); } catch (e) { emit('hook', k + ' (getter throws)'); continue; }
    if (now !== before[k]) emit('hook', k);
  }
  process.exit(0);
}
let compared = false;
const wait = require('./settle.js');
function finish() { if (!compared) { compared = true; wait(Math.min(300, settle), settle * 3, compare); } }
async function loadAll() {
  for (const [entry, mode] of entries) {
    try {
      if (mode === 'import') await import(require('url').pathToFileURL(entry).href);
      else require(entry);
    } catch (e) { console.error(String(e && e.stack || e)); }
  }
}
loadAll().then(finish, finish);
setTimeout(compare, settle * 3 + 8000).unref();
