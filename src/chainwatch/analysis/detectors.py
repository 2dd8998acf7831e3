"""Detectors that need a little computation beyond a pattern: counts, entropy, structure.

Each takes the file and the rule's ``params`` and returns hits (offset, length, message).
Rules name them under ``match.detector``; thresholds live in the rule files.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from chainwatch.manifest import INSTALL_HOOKS as INSTALL_HOOKS  # re-exported
from chainwatch.manifest import Manifest
from chainwatch.model import PackageFile

if TYPE_CHECKING:
    from chainwatch.analysis.hooks import Hook


@dataclass(frozen=True)
class Hit:
    offset: int
    length: int
    message: str = ""


Detector = Callable[[PackageFile, dict[str, Any]], list[Hit]]
DETECTORS: dict[str, Detector] = {}


def detector(name: str) -> Callable[[Detector], Detector]:
    def register(fn: Detector) -> Detector:
        DETECTORS[name] = fn
        return fn

    return register


#: Detectors that can read a large file in windows around the places their rules' needles
#: matched (the offsets, every rule of that detector together): the engine calls these
#: instead of the whole-file ones above its window threshold.
WindowedDetector = Callable[[PackageFile, dict[str, Any], tuple[int, ...]], list[Hit]]
WINDOWED_DETECTORS: dict[str, WindowedDetector] = {}


def windowed_detector(name: str) -> Callable[[WindowedDetector], WindowedDetector]:
    def register(fn: WindowedDetector) -> WindowedDetector:
        WINDOWED_DETECTORS[name] = fn
        return fn

    return register


# --- manifest: install-time scripts ---------------------------------------------------------
#: Detectors that read the parsed manifest rather than the bytes of package.json.
ManifestDetector = Callable[[PackageFile, Manifest, dict[str, Any]], list[Hit]]
MANIFEST_DETECTORS: dict[str, ManifestDetector] = {}


def manifest_detector(name: str) -> Callable[[ManifestDetector], ManifestDetector]:
    def register(fn: ManifestDetector) -> ManifestDetector:
        MANIFEST_DETECTORS[name] = fn
        return fn

    return register


def key_offset(data: bytes, key: str) -> int:
    pos = data.find(f'"{key}"'.encode())
    return max(pos, 0)


@manifest_detector("install_scripts")
def install_scripts(file: PackageFile, manifest: Manifest, params: dict[str, Any]) -> list[Hit]:
    hooks = set(params.get("hooks", INSTALL_HOOKS))
    return [
        Hit(key_offset(file.data, k), len(k), f"{k} runs `{v[:200]}`")
        for k, v in manifest.lifecycle_scripts.items()
        if k in hooks
    ]


# --- obfuscation ----------------------------------------------------------------------------
_BUILD_PATH = re.compile(
    r"(^|/)(dist|build|lib|umd|esm|cjs|bundles?|vendor|out|min|browser|prebuilds?)([.-]\w+)?/"
    r"|[.-]min\.[cm]?js$|\.bundle\.[cm]?js$|\.prod(uction)?\.[cm]?js$",
    re.IGNORECASE,
)


def is_build_output(path: str) -> bool:
    return bool(_BUILD_PATH.search(path))


@detector("long_lines")
def long_lines(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    """Very long, dense lines in files that do not look like declared build output."""
    if is_build_output(file.path):
        return []
    min_len = int(params.get("min_length", 3000))
    max_ws = float(params.get("max_whitespace_ratio", 0.05))
    hits: list[Hit] = []
    offset = 0
    for line in file.data.split(b"\n"):
        if len(line) >= min_len:
            ws = line.count(b" ") + line.count(b"\t")
            if ws / len(line) <= max_ws:
                hits.append(Hit(offset, 0, f"line of {len(line)} characters, "
                                          f"{100 * ws / len(line):.1f}% whitespace"))
        offset += len(line) + 1
    return hits


def shannon(text: bytes) -> float:
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


_LONG_LITERAL = re.compile(rb"""(["'`])([A-Za-z0-9+/=_\-\\]{%d,})\1""")


@detector("entropy_blob")
def entropy_blob(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    min_len = int(params.get("min_length", 400))
    threshold = float(params.get("min_entropy", 5.2))
    pattern = re.compile(_LONG_LITERAL.pattern.replace(b"%d", str(min_len).encode()))
    hits: list[Hit] = []
    for m in pattern.finditer(file.data):
        body = m.group(2)
        h = shannon(body)
        if h >= threshold:
            hits.append(Hit(m.start(2), len(body),
                            f"string literal of {len(body)} characters, entropy {h:.2f} bits/char"))
    return hits


# --- wallets --------------------------------------------------------------------------------
WALLET_PATTERNS: dict[str, re.Pattern[bytes]] = {
    "ETH": re.compile(rb"\b0x[a-fA-F0-9]{40}\b"),
    "BTC": re.compile(rb"\b[13][a-km-zA-HJ-NP-Z1-9]{25,34}\b"),
    "BTC-bech32": re.compile(rb"\bbc1[ac-hj-np-z02-9]{11,71}\b"),
    "TRX": re.compile(rb"\bT[1-9A-HJ-NP-Za-km-z]{33}\b"),
    "LTC": re.compile(rb"\b(?:[LM][a-km-zA-HJ-NP-Z1-9]{26,33}|ltc1[ac-hj-np-z02-9]{11,71})\b"),
    "BCH": re.compile(rb"\b(?:bitcoincash:)?[qp][ac-hj-np-z02-9]{41}\b"),
    "SOL": re.compile(rb"\b[1-9A-HJ-NP-Za-km-z]{43,44}\b"),
}
_QUOTED = re.compile(rb"""["'`]([^"'`\s]{25,100})["'`]""")


@lru_cache(maxsize=4)  # two detectors ask for the same file in a row
def wallet_addresses(data: bytes) -> dict[str, dict[bytes, int]]:
    """Distinct quoted wallet-address-like literals by chain, with the offset of the first."""
    found: dict[str, dict[bytes, int]] = {}
    for m in _QUOTED.finditer(data):
        literal = m.group(1)
        for chain, pattern in WALLET_PATTERNS.items():
            if pattern.fullmatch(literal):
                if chain in ("BTC", "LTC", "TRX", "SOL") and not _mixed_case_digits(literal):
                    continue
                found.setdefault(chain, {}).setdefault(literal, m.start(1))
                break
    return found


def _mixed_case_digits(text: bytes) -> bool:
    """Base58 addresses mix upper, lower and digits; identifiers rarely all three."""
    return (any(c in b"0123456789" for c in text) and any(65 <= c <= 90 for c in text)
            and any(97 <= c <= 122 for c in text))


@detector("wallet_addresses")
def wallet_count(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    min_total = int(params.get("min_total", 20))
    min_chains = int(params.get("min_chains", 2))
    found = wallet_addresses(file.data)
    total = sum(len(v) for v in found.values())
    if total < min_total or len(found) < min_chains:
        return []
    first = min(min(v.values()) for v in found.values())
    summary = ", ".join(f"{len(v)} {k}" for k, v in sorted(found.items(), key=lambda i: -len(i[1])))
    return [Hit(first, 0, f"{total} hard-coded wallet addresses ({summary})")]


_LEVENSHTEIN = re.compile(
    rb"levenshtein|editDistance|Math\.min\(\s*[\w\[\]\.\-+ ]{1,40}\+\s*1\s*,\s*[\w\[\]\.\-+ ]{1,40}"
    rb"\+\s*1\s*,", re.IGNORECASE)


@detector("lookalike_address")
def lookalike_address(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    """A string-distance routine in the same file as a list of wallet addresses."""
    if not any(k in file.data for k in (b"Math.min", b"evenshtein", b"EVENSHTEIN", b"istance")):
        return []
    total = sum(len(v) for v in wallet_addresses(file.data).values())
    if total < int(params.get("min_addresses", 5)):
        return []
    m = _LEVENSHTEIN.search(file.data)
    if not m:
        return []
    return [Hit(m.start(), len(m.group()),
                f"edit-distance routine beside {total} wallet addresses: picks a look-alike address")]


# --- network --------------------------------------------------------------------------------
_IP_LITERAL = re.compile(rb"""(?:["'`]|https?://)((?:\d{1,3}\.){3}\d{1,3})(?::\d{1,5})?(?=["'`/])""")
_NOT_REMOTE = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/3", "255.255.255.255/32", "100.64.0.0/10",
)]


@detector("raw_ip")
def raw_ip(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    """Hard-coded remote IPv4 addresses used as hosts or in URLs."""
    hits: list[Hit] = []
    for m in _IP_LITERAL.finditer(file.data):
        try:
            ip = ipaddress.ip_address(m.group(1).decode())
        except ValueError:
            continue
        if any(ip in net for net in _NOT_REMOTE):
            continue
        # version-like tuples such as "1.2.3.4" are common; require a plausible first octet
        if int(str(ip).split(".")[0]) < 11 and not m.group(0).startswith(b"http"):
            continue
        hits.append(Hit(m.start(1), len(m.group(1)), f"hard-coded IP address {ip}"))
    return hits


# --- binaries and images --------------------------------------------------------------------
_MAGIC = {b"MZ": "Windows PE", b"\x7fELF": "ELF", b"\xcf\xfa\xed\xfe": "Mach-O",
          b"\xfe\xed\xfa\xcf": "Mach-O", b"\xca\xfe\xba\xbe": "Mach-O universal"}


@detector("executable")
def executable(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    for magic, kind in _MAGIC.items():
        if file.data.startswith(magic):
            if magic == b"MZ" and b"PE\x00\x00" not in file.data[:4096]:
                continue
            return [Hit(0, len(magic), f"bundled {kind} executable ({len(file.data)} bytes)")]
    return []


_IMAGE_END = {b"\x89PNG": b"IEND\xaeB`\x82", b"\xff\xd8\xff": b"\xff\xd9", b"GIF8": b"\x00;"}
_CODEISH = re.compile(rb"(eval\(|require\(|Function\(|child_process|module\.exports|=>\s*\{)")


@detector("image_payload")
def image_payload(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    """Images that carry code or a large blob after their end marker."""
    min_trailer = int(params.get("min_trailing_bytes", 256))
    for magic, end in _IMAGE_END.items():
        if not file.data.startswith(magic):
            continue
        hits: list[Hit] = []
        m = _CODEISH.search(file.data)
        if m:
            hits.append(Hit(m.start(), len(m.group()), "image holds JavaScript-like text"))
        stop = file.data.rfind(end)
        if stop != -1 and len(file.data) - (stop + len(end)) >= min_trailer:
            extra = len(file.data) - (stop + len(end))
            hits.append(Hit(stop + len(end), 0, f"{extra} bytes hidden after the image's end"))
        return hits
    return []


# Encoded literals, found in one pass and kept per file: both encoded-literal detectors read them.
# Hex is a subset of the base64 alphabet; "\\n" escapes inside a literal are allowed (long base64).
_ENCODED_LITERAL = re.compile(
    rb"""["'`]([A-Za-z0-9+/=]{8,2048}(?:\\n[A-Za-z0-9+/=]{1,2048}){0,32}(?:\\n)?)["'`]""")
# Encodings of printable ASCII (hosts, URLs, API names): in hex every byte starts with 2-7; in
# base64 every fourth character is A-Z or a-f. Random blobs rarely have that shape.
_HEX_ASCII = re.compile(rb"(?:[2-7][0-9a-fA-F])+")
_B64_ASCII = re.compile(
    rb"(?:[A-Za-f][A-Za-z0-9+/]{3})*(?:[A-Za-f][A-Za-z0-9+/]{2}=|[A-Za-f][A-Za-z0-9+/]==)?")
_DESTINATION = re.compile(
    r"^(?:(?:https?|wss?|ftp)://\S+"
    r"|(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?"
    r"|(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}(?::\d+)?(?:/\S*)?)$",
    re.IGNORECASE,
)
_COMMON_WORDS = re.compile(r"^[a-z]+\.(js|json|ts|md|txt|css|html|map)$", re.IGNORECASE)


def _destination(raw: bytes) -> str | None:
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    if len(text) < 6 or not text.isprintable() or _COMMON_WORDS.match(text):
        return None
    return text if _DESTINATION.match(text) else None


@lru_cache(maxsize=4)
def decoded_literals(data: bytes) -> tuple[tuple[int, int, str, bytes], ...]:
    """(offset, length, "hex" or "base64", decoded) of each literal that encodes ASCII text."""
    out: list[tuple[int, int, str, bytes]] = []
    for m in _ENCODED_LITERAL.finditer(data):
        raw = m.group(1)
        body = raw.replace(b"\\n", b"")
        if len(body) % 2 == 0 and _HEX_ASCII.fullmatch(body):
            out.append((m.start(1), len(raw), "hex", bytes.fromhex(body.decode())))
        elif len(body) % 4 == 0 and _B64_ASCII.fullmatch(body):
            try:
                out.append((m.start(1), len(raw), "base64", base64.b64decode(body, validate=True)))
            except (binascii.Error, ValueError):
                continue
    return tuple(out)


@detector("encoded_host")
def encoded_host(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    """Hex or base64 literals that decode to a URL, host name or IP address."""
    hits: list[Hit] = []
    for offset, length, kind, decoded in decoded_literals(file.data):
        dest = _destination(decoded)
        if dest:
            hits.append(Hit(offset, length, f"{kind} literal decodes to {dest[:100]!r}"))
    return hits


@detector("encoded_identifier")
def encoded_identifier(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    """Hex or base64 literals that decode exactly to sensitive module or API names."""
    names = {str(n).encode() for n in params.get("names", ())}
    hits = [Hit(offset, length, f"{kind} literal spells {decoded.decode()!r}")
            for offset, length, kind, decoded in decoded_literals(file.data) if decoded in names]
    return hits if len(hits) >= int(params.get("min_hits", 2)) else []


# --- binding.gyp ----------------------------------------------------------------------------
@detector("gyp_commands")
def gyp_commands(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    """Commands a root binding.gyp makes node-gyp run at install (routine include queries aside)."""
    from chainwatch.analysis.gyp import parse_gyp

    if file.path != "binding.gyp":
        return []
    return [Hit(c.offset, 0, f"node-gyp runs `{c.command[:200]}` ({c.kind})")
            for c in parse_gyp(file.data) if not c.routine]


# --- browser and wallet hooks ---------------------------------------------------------------
_HOOK_NAMES = {"fetch": "fetch", "xhr": "XMLHttpRequest", "wallet": "a wallet provider"}


@detector("browser_hook")
def browser_hook(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    """fetch / XMLHttpRequest / wallet provider methods replaced, however it is written."""
    from chainwatch.analysis import jsast
    from chainwatch.analysis.hooks import find_hooks

    return _hook_hits(find_hooks(file.data, jsast.language_kind(file.path)), params)


@windowed_detector("browser_hook")
def browser_hook_windowed(file: PackageFile, params: dict[str, Any],
                          offsets: tuple[int, ...]) -> list[Hit]:
    """browser_hook of a large file, parsed around the browser rules' needle matches (and the
    bindings they lead to; see hooks.find_hooks_windowed)."""
    from chainwatch.analysis import jsast
    from chainwatch.analysis.hooks import find_hooks_windowed

    return _hook_hits(find_hooks_windowed(file.data, jsast.language_kind(file.path), offsets),
                      params)


@detector("browser_hook_abuse")
def browser_hook_abuse(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    """A fetch / XHR / wallet hook that sends what it intercepts to a host, or rewrites the
    wallet transaction it intercepts (params: {does: exfil | rewrite})."""
    from chainwatch.analysis import jsast
    from chainwatch.analysis.hooks import find_hooks

    kind = jsast.language_kind(file.path)
    return _abuse_hits(file.data, kind, find_hooks(file.data, kind), params)


@windowed_detector("browser_hook_abuse")
def browser_hook_abuse_windowed(file: PackageFile, params: dict[str, Any],
                                offsets: tuple[int, ...]) -> list[Hit]:
    """browser_hook_abuse of a large file, parsed in windows like browser_hook."""
    from chainwatch.analysis import jsast
    from chainwatch.analysis.hooks import find_hooks_windowed

    kind = jsast.language_kind(file.path)
    return _abuse_hits(file.data, kind, find_hooks_windowed(file.data, kind, offsets), params)


def _abuse_hits(data: bytes, kind: str, found: tuple[Hook, ...],
                params: dict[str, Any]) -> list[Hit]:
    from chainwatch.analysis.hooks import hook_abuse

    does = str(params.get("does", "exfil"))
    hits: list[Hit] = []
    for h in found:
        what = hook_abuse(data, kind, h)
        if what is not None and what.startswith(does + ":"):
            hits.append(Hit(h.offset, h.length, f"{_HOOK_NAMES.get(h.api, h.api)} hook "
                            f"{what.split(': ', 1)[1]}"))
    return hits


def _hook_hits(found: tuple[Hook, ...], params: dict[str, Any]) -> list[Hit]:
    api = str(params.get("api", "fetch"))
    return [Hit(h.offset, h.length, f"{_HOOK_NAMES.get(api, api)} replaced by {h.how}")
            for h in found if h.api == api]
