// the package's dependencies are not installed in the sandbox, so a
// require() of one would throw before the code after it runs (a payload appended to an entry
// that starts with require('dep') would never be reached). Bare module names that cannot be
// resolved get an inert stand-in instead: callable, constructible, every property another
// stand-in, never a thenable. Relative paths and node: builtins resolve as usual.
'use strict';
const Module = require('module');
const path = require('path');
const STUB_DIR = path.join(__dirname, '.missing');
function standIn() {
  const target = function () { return proxy; };
  const proxy = new Proxy(target, {
    get(t, key) {
      if (key === 'then') return undefined;
      if (key === Symbol.toPrimitive) return () => '';
      if (key === Symbol.iterator) return function* () {};
      if (key === 'prototype') return t.prototype;
      if (key === '__esModule') return false;
      return proxy;
    },
    apply() { return proxy; },
    construct() { return proxy; },
    has() { return false; },
  });
  return proxy;
}
const shared = standIn();
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, isMain, options) {
  try {
    return resolve.call(this, request, parent, isMain, options);
  } catch (e) {
    const bare = typeof request === 'string' && !request.startsWith('.') && !request.startsWith('/') &&
      !request.startsWith('node:') && !Module.isBuiltin(request);
    if (!bare || !e || e.code !== 'MODULE_NOT_FOUND') throw e;
    const id = path.join(STUB_DIR, request.replace(/[^A-Za-z0-9@._-]/g, '_') + '.js');
    if (!require.cache[id]) {
      const m = new Module(id, null);
      m.filename = id;
      m.loaded = true;
      m.exports = shared;
      require.cache[id] = m;
    }
    return id;
  }
};
