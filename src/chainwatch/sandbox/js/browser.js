// chainwatch sandbox: load a browser/module entry with a minimal instrumented window and report
// every browser API the package replaced or wrapped. Usage: node browser.js ENTRY require|import
'use strict';
const fs = require('fs');
const statfs = fs.statfsSync;
function emit(kind, detail) {
  try {
    const data = Buffer.from(JSON.stringify({ kind: kind, detail: String(detail).slice(0, 400), pid: process.pid })).toString('base64url').slice(0, 3600);
    statfs('/.cw-ev/' + (data.match(/.{1,200}/g) || ['e30']).join('/'));
  } catch (e) { /* the path never exists */ }
}
const entry = process.argv[2];
const mode = process.argv[3] || 'require';
const settle = Number(process.env.CHAINWATCH_SETTLE_MS || 1000);
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
  for (const [k, get] of Object.entries(watched)) {
    let now;
    try { now = get(); } catch (e) { emit('hook', k + ' (getter throws)'); continue; }
    if (now !== before[k]) emit('hook', k);
  }
  process.exit(0);
}
function done() { setTimeout(compare, settle).unref(); }
if (mode === 'import') {
  import(require('url').pathToFileURL(entry).href).then(done, (e) => { console.error(String(e)); done(); });
} else {
  try { require(entry); } catch (e) { console.error(String(e && e.stack || e)); }
  done();
}
setTimeout(compare, settle + 500);
