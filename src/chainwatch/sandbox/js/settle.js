// wait until what the package started has settled, then call back: at
// least MIN ms, then until nothing that talks to the outside is pending (sockets, lookups,
// child processes, file requests), at most MAX ms. A payload that fetches after loading is
// seen to the end; a package that starts nothing costs MIN only.
'use strict';
const BUSY = new Set(['TCPSocketWrap', 'TCPWRAP', 'TLSWrap', 'TLSWRAP', 'GetAddrInfoReqWrap',
  'GETADDRINFOREQWRAP', 'QueryReqWrap', 'QUERYWRAP', 'UDPWrap', 'UDPWRAP', 'PipeWrap',
  'PIPEWRAP', 'ProcessWrap', 'PROCESSWRAP', 'FSReqCallback', 'FSREQCALLBACK', 'FileHandle',
  'TCPConnectWrap', 'PipeConnectWrap', 'WriteWrap', 'ShutdownWrap', 'HTTPClientAsyncResource',
  'HTTPINCOMINGMESSAGE', 'ZLIB']);
const PENDING = Symbol.for('pending.requests');
module.exports = function settle(min, max, done) {
  const started = Date.now();
  const timer = setInterval(() => {
    const elapsed = Date.now() - started;
    let busy = (process[PENDING] || 0) > 0;  // counted by the preload
    try {
      busy = busy || process.getActiveResourcesInfo().some((r) => BUSY.has(r));
    } catch (e) { busy = elapsed < max; }
    if (elapsed >= max || (elapsed >= min && !busy)) {
      clearInterval(timer);
      done();
    }
  }, 100);
  timer.unref();
  // the interval is unref'd; this keeps the loop alive until done
  const hold = setTimeout(() => {}, max + 1000);
  return () => clearTimeout(hold);
};
