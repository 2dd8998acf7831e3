"""Inert incident replicas: load a spec and inject it into a host package's files.

A spec (``tests/fixtures/replicas/*.yml``) names the incident and techniques, the verdict and
top technique expected, and what the attacker changed: files added (``add``), code appended to
the entry file (``append_main``, with ``%WALLETS%`` replaced by a generated table of made-up
addresses), ``package.json`` keys merged (``manifest``). ``hosts`` lists real benign package
versions to inject into for the benchmark corpus; tests use a small synthetic host instead.
``obfuscated`` holds a hand-obfuscated variant of the injected parts (:func:`obfuscated`).
Everything is written by us, is inert (``.invalid`` hosts, 192.0.2.0/24) and is never run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from bench.corpus.expect import Expect
from bench.corpus.expect import parse as parse_dynamic

SPECS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "replicas"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


@dataclass(frozen=True)
class Spec:
    name: str
    incident: str
    reference: str
    techniques: tuple[str, ...]
    expect: str
    top_technique: tuple[str, ...]
    manifest: dict[str, Any] = field(default_factory=dict)
    add: dict[str, str] = field(default_factory=dict)
    append_main: str | None = None
    wallets: dict[str, int] = field(default_factory=dict)
    obfuscate: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    #: The attack is a new package (typosquat, probe): judged without a baseline.
    new_package: bool = False
    #: A hand-obfuscated variant, written the way droppers hide API names (string
    #: concatenation, computed member access, base64 literals): ``add``/``append_main``/
    #: ``manifest`` that replace the plain ones (see :func:`obfuscated`).
    obfuscated_parts: dict[str, Any] = field(default_factory=dict)
    #: What the payload does in the sandbox (``scan --sandbox``): see bench/corpus/expect.py.
    dynamic: Expect | None = None


def load(path: Path) -> Spec:
    raw = yaml.safe_load(path.read_text())
    return Spec(
        name=path.stem, incident=raw["incident"], reference=raw["reference"],
        techniques=tuple(raw["techniques"]), expect=raw["expect"],
        top_technique=tuple(raw["top_technique"]), manifest=raw.get("manifest") or {},
        add=raw.get("add") or {}, append_main=raw.get("append_main"),
        wallets=raw.get("wallets") or {}, obfuscate=tuple(raw.get("obfuscate") or ()),
        hosts=tuple(raw.get("hosts") or ()), new_package=bool(raw.get("new_package")),
        obfuscated_parts=raw.get("obfuscated") or {}, dynamic=parse_dynamic(raw.get("dynamic")))


def obfuscated(spec: Spec) -> Spec | None:
    """The spec's hand-obfuscated variant (same expectations), or None when it has none."""
    parts = spec.obfuscated_parts
    if not parts:
        return None
    return replace(
        spec, name=f"{spec.name}--hand-obfuscated",
        add={**spec.add, **(parts.get("add") or {})},
        append_main=parts.get("append_main", spec.append_main),
        manifest={**spec.manifest, **(parts.get("manifest") or {})},
        obfuscated_parts={})


def specs() -> list[Spec]:
    return [load(p) for p in sorted(SPECS.glob("*.yml"))]


def _b58(i: int, k: int, n: int) -> str:
    return "".join(_B58[(i * 7 + j * 13 + k) % len(_B58)] for j in range(n))


def wallet_table(counts: dict[str, int]) -> str:
    """Syntactically plausible, made-up addresses for each chain (none is a real wallet)."""
    out: list[str] = []
    for i in range(1, counts.get("eth", 0) + 1):
        out.append(f"0x{(i * 2654435761 + 977) % (1 << 160):040x}")
    for i in range(counts.get("btc", 0)):
        out.append("1" + _b58(i, 1, 31) + "A9z")
    for i in range(counts.get("bech32", 0)):
        out.append("bc1q" + "".join(_BECH[(i * 5 + j * 11) % 32] for j in range(38)))
    for i in range(counts.get("trx", 0)):
        out.append("T" + _b58(i, 3, 30) + "xY7")
    for i in range(counts.get("ltc", 0)):
        out.append("L" + _b58(i, 5, 30) + "Qm3")
    return ",".join(f"'{a}'" for a in out)


def main_file(manifest: dict[str, Any]) -> str:
    main = manifest.get("main")
    path = main.removeprefix("./") if isinstance(main, str) else "index.js"
    return path if path.endswith((".js", ".cjs", ".mjs")) else f"{path}.js"


def appended_code(spec: Spec) -> str:
    assert spec.append_main is not None
    return spec.append_main.replace("%WALLETS%", wallet_table(spec.wallets))


def bump_patch(version: str) -> str:
    core = version.split("-", 1)[0].split("+", 1)[0]
    major, minor, patch = [*core.split("."), "0", "0"][:3]
    return f"{major}.{minor}.{int(patch) + 1}"


def inject(files: dict[str, bytes], spec: Spec,
           transform: Callable[[str, str], str] = lambda name, code: code) -> dict[str, bytes]:
    """The host's files as the attacker would publish them: a patch release with the payload.

    ``transform(part, code)`` may rewrite each injected part (``append_main`` or a file name)
    that the spec lists under ``obfuscate``: the benchmark passes javascript-obfuscator there.
    """
    manifest = json.loads(files["package.json"])
    out = dict(files)
    if spec.append_main is not None:
        target = main_file(manifest)
        code = appended_code(spec)
        if "append_main" in spec.obfuscate:
            code = transform("append_main", code)
        out[target] = out.get(target, b"") + b"\n" + code.encode()
    for name, code in spec.add.items():
        out[name] = (transform(name, code) if name in spec.obfuscate else code).encode()
    for key, value in spec.manifest.items():
        if isinstance(value, dict) and isinstance(manifest.get(key), dict):
            manifest[key] = {**manifest[key], **value}
        else:
            manifest[key] = value
    manifest["version"] = bump_patch(str(manifest.get("version", "0.0.0")))
    out["package.json"] = json.dumps(manifest, indent=2).encode()
    return out
