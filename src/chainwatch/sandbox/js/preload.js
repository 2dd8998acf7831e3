// Preload (loaded with --require inside the sandbox only).
// Records fs, net, dns, http(s), fetch, child_process, process.env and eval/Function use, and
// reports each through statfs() on a path that does not exist: the host's strace sees the call.
// Package code can undo these wrappers; strace, outside the sandbox, is the record that counts.
'use strict';
(function () {
  const fs = require('fs');
  const statfs = fs.statfsSync;
  const home = process.env.HOME || '/home/node';
  // settings from a file beside this one (never the environment, which the package sees)
  let options = {};
  try { options = JSON.parse(fs.readFileSync(require('path').join(__dirname, 'options.json'), 'utf8')); } catch (e) { /* defaults */ }
  const pkg = options.dir || process.cwd();
  let sent = 0;
  function emit(kind, detail) {
    if (sent++ > 400) return;
    try {
      const data = Buffer.from(JSON.stringify({ kind: kind, detail: String(detail).slice(0, 400),
        pid: process.pid })).toString('base64url').slice(0, 3600);
      const parts = data.match(/.{1,200}/g) || ['e30'];
      statfs('/.cw-ev/' + parts.join('/'));
    } catch (e) { /* the path never exists */ }
  }
  function describe(x) {
    try {
      if (typeof x === 'string') return x;
      if (x instanceof URL) return x.href;
      if (x && typeof x === 'object') return JSON.stringify(x, (k, v) => (typeof v === 'function' ? undefined : v)).slice(0, 300);
    } catch (e) { /* fall through */ }
    return String(x);
  }
  function wrap(obj, name, kind, detail) {
    const orig = obj && obj[name];
    if (typeof orig !== 'function') return;
    const wrapped = function () {
      try { emit(kind, name + ' ' + detail(arguments)); } catch (e) { /* never break the call */ }
      return new.target ? Reflect.construct(orig, arguments, new.target) : orig.apply(this, arguments);
    };
    Object.defineProperty(wrapped, 'name', { value: orig.name });
    try { obj[name] = wrapped; } catch (e) { /* frozen */ }
  }
  // requests still in flight, for the harness's settle wait (js/settle.js)
  const PENDING = Symbol.for('pending.requests');
  process[PENDING] = 0;
  function track(result) {
    try {
      if (result && typeof result.then === 'function') {
        process[PENDING]++;
        const end = () => { process[PENDING]--; };
        result.then(end, end);
      } else if (result && typeof result.once === 'function') {
        process[PENDING]++;
        let ended = false;
        const end = () => { if (!ended) { ended = true; process[PENDING]--; } };
        result.once('close', end);
        result.once('error', end);
      }
    } catch (e) { /* never break the call */ }
    return result;
  }
  function tracked(obj, name) {
    const orig = obj && obj[name];
    if (typeof orig !== 'function') return;
    const t = function () { return track(new.target ? Reflect.construct(orig, arguments, new.target) : orig.apply(this, arguments)); };
    Object.defineProperty(t, 'name', { value: orig.name });
    try { obj[name] = t; } catch (e) { /* frozen */ }
  }
  const first = (a) => describe(a[0]);
  const cmd = (a) => describe(a[0]) + (Array.isArray(a[1]) ? ' ' + a[1].map(describe).join(' ') : '');
  const cp = require('child_process');
  let spawning = 0;  // node copies the whole environment for a child: not a read by the package
  for (const n of ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork']) {
    wrap(cp, n, 'exec', cmd);
    const logged = cp[n];
    cp[n] = function () { spawning++; try { return logged.apply(this, arguments); } finally { spawning--; } };
  }
  const net = require('net');
  wrap(net, 'connect', 'net', (a) => describe(a[0]) + (a[1] !== undefined ? ' ' + describe(a[1]) : ''));
  wrap(net, 'createConnection', 'net', (a) => describe(a[0]) + (a[1] !== undefined ? ' ' + describe(a[1]) : ''));
  const dns = require('dns');
  for (const n of ['lookup', 'resolve', 'resolve4', 'resolve6', 'resolveTxt', 'resolveAny']) wrap(dns, n, 'dns', first);
  for (const mod of ['http', 'https']) {
    const m = require(mod);
    wrap(m, 'request', 'net', (a) => mod + ' ' + describe(a[0]));
    wrap(m, 'get', 'net', (a) => mod + ' ' + describe(a[0]));
    tracked(m, 'request');
    tracked(m, 'get');
  }
  if (typeof globalThis.fetch === 'function') { wrap(globalThis, 'fetch', 'net', first); tracked(globalThis, 'fetch'); }
  for (const n of ['lookup', 'resolve', 'resolve4', 'resolve6', 'resolveTxt', 'resolveAny']) {
    const orig = dns[n];
    if (typeof orig !== 'function') continue;
    dns[n] = function () {
      const args = Array.from(arguments);
      const cb = args[args.length - 1];
      if (typeof cb === 'function') {
        process[PENDING]++;
        let ended = false;
        args[args.length - 1] = function () { if (!ended) { ended = true; process[PENDING]--; } return cb.apply(this, arguments); };
      }
      return orig.apply(this, args);
    };
  }
  const outside = (p) => {
    const s = describe(p);
    return s.startsWith('/') ? !s.startsWith(pkg) && !s.startsWith('/tmp') : false;
  };
  for (const n of ['writeFileSync', 'writeFile', 'appendFileSync', 'appendFile', 'copyFileSync', 'createWriteStream']) {
    const orig = fs[n];
    if (typeof orig !== 'function') continue;
    fs[n] = function () {
      const target = n.startsWith('copy') ? arguments[1] : arguments[0];
      if (outside(target)) emit('write', n + ' ' + describe(target));
      return orig.apply(this, arguments);
    };
  }
  for (const n of ['readFileSync', 'readFile', 'createReadStream']) {
    const orig = fs[n];
    if (typeof orig !== 'function') continue;
    fs[n] = function () {
      const s = describe(arguments[0]);
      if (s.startsWith(home) && !s.startsWith(pkg)) emit('file', n + ' ' + s);
      return orig.apply(this, arguments);
    };
  }
  const baitNames = Array.isArray(options.env) ? options.env.map(String) : [];
  const isNpm = /(npm-cli\.js|\/bin\/npm)$/.test(process.argv[1] || '');  // npm reads its own tokens
  if (baitNames.length && !isNpm) {
    const env = process.env;
    const seen = new Set();
    let copying = false;  // {...process.env}: every key is read once, nothing is singled out
    try {
      process.env = new Proxy(env, {
        get(t, k) {
          if (!spawning && !copying && typeof k === 'string' && baitNames.includes(k) && !seen.has(k)) { seen.add(k); emit('env', k); }
          return Reflect.get(t, k);
        },
        ownKeys(t) {
          if (!spawning) emit('env', '* (all variables listed)');
          if (!copying) { copying = true; setImmediate(() => { copying = false; }); }
          return Reflect.ownKeys(t);
        },
      });
    } catch (e) { /* read-only */ }
  }
  const origEval = globalThis.eval;
  globalThis.eval = new Proxy(origEval, { apply(t, self, args) { emit('eval', 'eval ' + describe(args[0]).slice(0, 120)); return Reflect.apply(t, self, args); } });
  const OrigFunction = globalThis.Function;
  globalThis.Function = new Proxy(OrigFunction, {
    apply(t, self, args) { emit('eval', 'Function ' + describe(args[args.length - 1]).slice(0, 120)); return Reflect.apply(t, self, args); },
    construct(t, args) { emit('eval', 'Function ' + describe(args[args.length - 1]).slice(0, 120)); return Reflect.construct(t, args); },
  });
})();
