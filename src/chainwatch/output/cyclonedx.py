"""``inventory --format cyclonedx``: a CycloneDX 1.6 JSON SBOM of the environments found.

Components are the exact npm packages (purls by packageurl-python, the scope as ``group``),
with their hashes taken from the lockfile's ``integrity`` (SRI: ``sha512-<base64>`` becomes
``{"alg": "SHA-512", "content": "<hex>"}``); the dependency graph is ``dependencies`` with
``ref``/``dependsOn``; the project is ``metadata.component``. Declared ranges that no lockfile
resolved (a lone package.json) are not components: an SBOM lists what is installed.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from packageurl import PackageURL

from chainwatch import __version__
from chainwatch.model import Environment, InstalledPackage

SPEC_VERSION = "1.6"
#: SRI algorithm → (CycloneDX ``alg``, digest bytes).
SRI_ALGORITHMS = {"sha1": ("SHA-1", 20), "sha256": ("SHA-256", 32), "sha384": ("SHA-384", 48),
                  "sha512": ("SHA-512", 64)}


def sri_hashes(integrity: str | None) -> list[dict[str, str]]:
    """CycloneDX hashes of an SRI string (several hashes, options after ``?`` ignored); a token
    that is not a well-formed digest of a known algorithm is left out, never guessed."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for token in (integrity or "").split():
        algorithm, dash, encoded = token.partition("-")
        known = SRI_ALGORITHMS.get(algorithm.lower())
        if not dash or known is None:
            continue
        try:
            digest = base64.b64decode(encoded.split("?", 1)[0], validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(digest) == known[1]:
            found.setdefault((known[0], digest.hex()), {"alg": known[0], "content": digest.hex()})
    return list(found.values())


def purl(p: InstalledPackage) -> str:
    namespace, _, name = p.name.rpartition("/")
    return str(PackageURL(type="npm", namespace=namespace or None, name=name,
                          version=p.version).to_string())


def _component(p: InstalledPackage, ref: str) -> dict[str, Any]:
    namespace, _, name = p.name.rpartition("/")
    component: dict[str, Any] = {"type": "library", "bom-ref": ref}
    if namespace:
        component["group"] = namespace
    component.update({"name": name, "version": p.version, "purl": ref,
                      "scope": "excluded" if p.dev else ("optional" if p.optional else "required")})
    hashes = sri_hashes(p.integrity)
    if hashes:
        component["hashes"] = hashes
    if p.resolved and p.resolved.startswith(("https://", "http://")):
        component["externalReferences"] = [{"type": "distribution", "url": p.resolved}]
    return component


def _same_bytes(ours: list[dict[str, str]], theirs: list[dict[str, str]]) -> bool:
    """Whether two hash lists agree wherever they share an algorithm (and share one)."""
    mine = {h["alg"]: h["content"] for h in ours}
    other = {h["alg"]: h["content"] for h in theirs}
    shared = mine.keys() & other.keys()
    return bool(shared) and all(mine[a] == other[a] for a in shared)


def _with_checksum(p: InstalledPackage, hashes: list[dict[str, str]]) -> str:
    """The purl of ``p`` with a ``checksum`` qualifier naming its bytes."""
    namespace, _, name = p.name.rpartition("/")
    best = hashes[-1] if hashes else {"alg": "", "content": ""}
    checksum = f"{best['alg'].lower().replace('-', '')}:{best['content']}"
    return str(PackageURL(type="npm", namespace=namespace or None, name=name, version=p.version,
                          qualifiers={"checksum": checksum}).to_string())


def _application(name: str, ref: str) -> dict[str, Any]:
    return {"type": "application", "bom-ref": ref, "name": name or "(root)"}


def inventory_cyclonedx(envs: Sequence[Environment]) -> str:
    components: dict[str, dict[str, Any]] = {}
    depends: dict[str, set[str]] = {}
    roots: list[dict[str, Any]] = []
    for index, env in enumerate(envs):
        refs: dict[str, str] = {}  # name@version -> purl
        for p in env.packages:
            if not p.exact:
                continue
            ref = purl(p)
            hashes = sri_hashes(p.integrity)
            kept_hashes = components[ref].get("hashes") if ref in components else None
            if hashes and kept_hashes and not _same_bytes(hashes, kept_hashes):
                # the same name@version with other bytes (an alias to another registry, a
                # tarball URL): its own component, never merged into the registry's
                ref = _with_checksum(p, hashes)
            refs.setdefault(f"{p.name}@{p.version}", ref)
            if ref in components:  # seen in another environment: production wins over dev
                kept = components[ref]
                if kept["scope"] != "required" and not p.dev and not p.optional:
                    kept["scope"] = "required"
                if hashes and "hashes" not in kept:
                    kept["hashes"] = hashes
            else:
                components[ref] = _component(p, ref)
        for key, children in env.edges:
            if key in refs:
                depends.setdefault(refs[key], set()).update(refs[c] for c in children if c in refs)
        env_ref = f"environment:{index}:{env.source}"
        root_label = env.root
        importer_refs: list[str] = []
        for label, direct in env.importers:
            if label == root_label:
                depends.setdefault(env_ref, set()).update(refs[c] for c in direct if c in refs)
                continue
            ref = f"{env_ref}#{label}"
            importer_refs.append(ref)
            components[ref] = _application(label, ref)
            depends.setdefault(ref, set()).update(refs[c] for c in direct if c in refs)
        depends.setdefault(env_ref, set()).update(importer_refs)
        name = root_label if root_label not in (None, ".", "(root)") else (
            PurePath(env.source).parent.name or env.source)
        root = _application(name or env.source, env_ref)
        root["description"] = f"{env.kind}: {env.source}"
        roots.append(root)
    if len(roots) == 1:
        metadata_component = roots[0]
    else:  # several environments: the inventory itself is the root, each one a part of it
        # named after the folder the environments share (a project's lockfile and its
        # node_modules), else generically
        metadata_component = _application(_shared_folder(envs) or "chainwatch inventory", "inventory")
        depends["inventory"] = {r["bom-ref"] for r in roots}
        for r in roots:
            components[r["bom-ref"]] = r
    bom = {
        "$schema": f"http://cyclonedx.org/schema/bom-{SPEC_VERSION}.schema.json",
        "bomFormat": "CycloneDX", "specVersion": SPEC_VERSION, "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).replace(microsecond=0).isoformat().replace(
                "+00:00", "Z"),
            "tools": {"components": [{"type": "application", "name": "chainwatch",
                                      "version": __version__}]},
            "component": metadata_component},
        "components": list(components.values()),
        "dependencies": [{"ref": ref, "dependsOn": sorted(children - {ref})}
                         for ref, children in sorted(depends.items())],
    }
    return json.dumps(bom, indent=2)


def _shared_folder(envs: Sequence[Environment]) -> str | None:
    """The name of the folder every environment's source lies in, when there is one."""
    import os.path

    try:
        common = os.path.commonpath([str(PurePath(e.source).parent) for e in envs])
    except ValueError:  # relative and absolute sources mixed
        return None
    return PurePath(common).name or None
