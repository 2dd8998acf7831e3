"""What a benign install hook does, bounded: when install-time evidence may weigh less.

Two legitimate shapes look like droppers to a pattern rule:

- **a platform binary fetched at install** (esbuild's ``install.js``: when the optional
  dependency for this platform is missing, fetch its tarball from the npm registry, write the
  binary, ``chmod 755`` and run ``--version``). Its findings weigh low only when the behaviour
  is bounded: the lifecycle hooks are exactly those of the previous release (never a new or
  changed hook), every host the install-time files name (URLs, bare host names, IPs; comments
  aside) is the npm registry (a path of the package's own name, scope or optional dependencies,
  or one built in code) or the package's declared repository, every host is one the previous
  release's install files named too (when its files are known), and those files show nothing
  but fetching, writing and running (no secrets, fingerprinting, exfiltration, concealment,
  persistence, hidden processes, eval or behaviour chains).
- **a set of prebuilt native addons** (bcrypt's ``prebuilds/<os>-<arch>/*.node``): one addon
  built for several platforms is one piece of evidence, not one per platform, when every copy
  is a shared library (not an executable) in the format of the platform its folder names.

Nothing here looks at a package's name; the same shapes with a payload stay flagged
(``tests/hostile/test_install_shapes.py``).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from urllib.parse import urlsplit

from chainwatch.analysis.engine import CODE_EXT
from chainwatch.analysis.normalize import normalize
from chainwatch.analysis.release_signals import RUN_ON_INSTALL, _without_comments
from chainwatch.manifest import Manifest
from chainwatch.model import Finding, PackageFile, Severity

#: rules whose install-time findings describe fetching, writing and running a file
FETCH_RULES = frozenset({"CW-DROPPER-DOWNLOAD-EXEC", "CW-INSTALL-DOWNLOAD"})
#: capabilities an install-time file of a bounded fetch may show (at any severity)
FETCH_CAPABILITIES = frozenset({"dropper", "network", "exec", "binary", "install-script", ""})
REGISTRY_HOSTS = frozenset({"registry.npmjs.org", "registry.npmjs.com", "registry.yarnpkg.com"})
#: install-time files larger than this are not profiled (never relaxed)
MAX_PROFILE_BYTES = 2 * 1024 * 1024

_URL = re.compile(rb"""(?i)\b(?:https?|wss?|ftp)://([^\s'"`/\\?#]*)([^\s'"`]*)""")
_QUOTED = re.compile(rb"""['"`]([^'"`\s]{3,253})['"`]""")
#: a top-level label is all lower or all upper case: `esbuild.binaryHashes` is a property name
_HOSTLIKE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?:[a-z]{2,24}|[A-Z]{2,24})(?::\d{1,5})?$")
#: what lets a file reach the network: a network module, a fetch API, a shell downloader
_SINK = re.compile(
    rb"""(?x)['"`](?:node:)?(?:https?|http2|net|tls|dgram|dns|undici|axios|node-fetch|got|request
         |needle|superagent|make-fetch-happen|minipass-fetch|ws)['"`]
       |\b(?:fetch|XMLHttpRequest|WebSocket|EventSource)\s*\(|\bnew\s+(?:XMLHttpRequest|WebSocket)\b
       |\b(?:curl|wget|certutil|bitsadmin|Invoke-WebRequest|Invoke-RestMethod|iwr|irm)\b""")
#: hosts many owners publish under: the place is the host and the first path segment
#: (github.com/owner-a and github.com/owner-b are two places)
MULTI_TENANT = frozenset({"github.com", "gitlab.com", "bitbucket.org", "codeberg.org",
                          "raw.githubusercontent.com", "gist.github.com",
                          "gist.githubusercontent.com", *REGISTRY_HOSTS})
#: a string literal of an install file, which may name a data file it reads
_STRING = re.compile(rb"""['"`]([^'"`\r\n]{1,200})['"`]""")
#: non-code files whose URLs are documentation, not data (unless an install file names them)
_DOC_EXT = (".md", ".markdown", ".rst", ".map", ".d.ts", ".html", ".css", ".svg")
_DOC_NAMES = ("readme", "changelog", "history", "license", "licence", "authors", "contributing")
#: a child process handed the whole environment (every token the installing user has)
_ENV_ALL = re.compile(
    rb"""\benv\s*:\s*(?:process\.env|\{\s*\.\.\.\s*process\.env\s*\}|Object\.assign\(\s*\{\s*\}\s*,\s*process\.env\s*\))\s*[,}\n]""")
_SPAWN = re.compile(rb"\b(?:exec|execSync|execFile|execFileSync|spawn|spawnSync|fork)\s*\(")
_WRITE = re.compile(rb"\b(?:writeFile|writeFileSync|createWriteStream|chmod|chmodSync)\s*\(")
_IPV4 = re.compile(r"^(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?$")
#: a quoted word.ext that is a file name, not a host (a host ending in these is rare enough;
#: `bun.sh` is not among them: .sh counts as a host)
_FILE_EXT = frozenset({
    "js", "cjs", "mjs", "ts", "json", "node", "exe", "dll", "so", "dylib", "wasm", "md", "txt",
    "tgz", "gz", "tar", "map", "lock", "toml", "yml", "yaml", "html", "css", "cmd", "bat",
    "log", "tmp", "bin", "pem", "h", "c", "cc", "cpp", "gyp", "gypi", "py", "jsx", "tsx",
    "png", "svg", "xml", "zip", "ps1", "version", "env", "exports", "platform", "arch",
})


def _repository(manifest: Manifest) -> tuple[str, str] | None:
    """(host, /owner/repo) of the manifest's declared repository, lower-cased."""
    repo = manifest.raw.get("repository")
    url = repo.get("url") if isinstance(repo, Mapping) else repo
    if not isinstance(url, str) or not url:
        return None
    url = url.strip()
    m = re.match(r"^(github|gitlab|bitbucket):([\w.-]+/[\w.-]+)$", url)
    if m:
        host = {"github": "github.com", "gitlab": "gitlab.com", "bitbucket": "bitbucket.org"}
        return host[m.group(1)], "/" + m.group(2).lower().removesuffix(".git")
    if re.match(r"^[\w.-]+/[\w.-]+$", url):  # "owner/repo" is GitHub shorthand
        return "github.com", "/" + url.lower().removesuffix(".git")
    parts = urlsplit(url.removeprefix("git+"))
    path = "/".join(parts.path.lower().removesuffix(".git").split("/")[:3])
    if not parts.hostname or path.count("/") < 2:
        return None
    return parts.hostname.lower(), path


def _own_names(manifest: Manifest) -> set[str]:
    """Names a registry path may start with: the package, its scope, its optional deps."""
    names = {n for n in (manifest.name, *manifest.optional_dependencies) if n}
    scopes = {n.split("/")[0] for n in names if n.startswith("@") and "/" in n}
    return names | scopes


def _reaches_network(file: PackageFile) -> bool:
    """Whether the file, as written or as normalised, names a way to the network. The URLs in
    a file that cannot reach it (a shim's error message) are text, not destinations."""
    if _SINK.search(file.data):
        return True
    if file.path.lower().endswith(CODE_EXT):
        return bool(_SINK.search(normalize(file.data, file.path).text))
    return False


def _host_problems(data: bytes, manifest: Manifest) -> tuple[set[str], list[str]]:
    """(hosts named, reasons the hosts are not bounded) for one install-time file."""
    hosts: set[str] = set()
    problems: list[str] = []
    repo = _repository(manifest)
    own = _own_names(manifest)
    for m in _URL.finditer(data):
        host = m.group(1).decode("ascii", "replace").lower().rsplit("@", 1)[-1]
        path = m.group(2).decode("ascii", "replace")
        if not host or "$" in host or "{" in host or "+" in host:
            problems.append(f"a URL whose host is built in code ({m.group(0)[:80]!r})")
            continue
        host = host.split(":")[0]
        hosts.add(place(host, path))
        if host in REGISTRY_HOSTS:
            first = path.lstrip("/").split("/")[0]
            first = first.replace("%40", "@").replace("%2f", "/").replace("%2F", "/")
            if first and not first.startswith("$") and first not in own:
                problems.append(f"a registry URL of another package ({first[:60]})")
        elif repo is not None and host == repo[0]:
            if not (path.lower() + "/").startswith(repo[1] + "/"):
                problems.append(f"a URL on {host} outside the declared repository")
        else:
            problems.append(f"a host the manifest does not declare ({host[:80]})")
    for m in _QUOTED.finditer(_URL.sub(b"", data)):
        text = m.group(1).decode("utf-8", "replace")
        if _IPV4.match(text):
            try:
                ipaddress.ip_address(text.split(":")[0])
            except ValueError:
                continue
            problems.append(f"an IP address ({text})")
            hosts.add(text)
        elif _HOSTLIKE.match(text) and text.rsplit(".", 1)[-1].split(":")[0].lower() not in _FILE_EXT:
            host = text.split(":")[0].lower()
            if host in REGISTRY_HOSTS or (repo is not None and host == repo[0]):
                hosts.add(host)
                continue
            problems.append(f"a host name ({text[:80]})")
            hosts.add(host)
    return hosts, problems


def place(host: str, path: str) -> str:
    """Where a URL points, for comparing releases: the host, and on a host many owners publish
    under (GitHub, GitLab, the npm registry) the first path segment too."""
    if host in MULTI_TENANT:
        first = path.lstrip("/").split("/")[0].split("?")[0].split("#")[0].lower()
        if "$" in first or "{" in first or "+" in first:
            return f"{host}/*"  # an owner built in code: renaming a variable moves nothing
        if first:
            return f"{host}/{first[:100]}"
    return host


def _text(file: PackageFile) -> bool:
    return len(file.data) <= MAX_PROFILE_BYTES and b"\x00" not in file.data[:8192]


def data_files(install_files: Sequence[PackageFile],
               all_files: Sequence[PackageFile]) -> list[PackageFile]:
    """Non-code text files of the package (JSON, YAML, text; never package.json, read for its
    scripts apart) that an install file names in a string: ``require("./mirror.json")``,
    ``require("./mirror")``, ``path.join(__dirname, "hosts.txt")``. Their hosts are the
    install file's hosts: moving a URL into a data file hides nothing."""
    own = {f.path for f in install_files}
    candidates = [f for f in all_files if f.path not in own and f.path != "package.json"
                  and not f.path.lower().endswith(CODE_EXT) and _text(f)]
    if not candidates:
        return []
    named: set[str] = set()
    for file in install_files:
        if len(file.data) > MAX_PROFILE_BYTES:
            continue
        base = posixpath.dirname(file.path)
        for m in _STRING.finditer(_without_comments(file)):
            text = m.group(1).decode("utf-8", "replace").replace("\\", "/").strip()
            if not text:
                continue
            joined = posixpath.normpath(posixpath.join(base, text))
            named.update({posixpath.basename(text), joined, joined + ".json"})
    return [f for f in candidates if f.path in named or posixpath.basename(f.path) in named]


def _documentation(path: str) -> bool:
    low = path.lower()
    return low.endswith(_DOC_EXT) or posixpath.basename(low).split(".")[0] in _DOC_NAMES


def install_hosts(files: Iterable[PackageFile], manifest: Manifest,
                  all_files: Sequence[PackageFile] = ()) -> set[str]:
    """Every place (host, or host/owner: ``place``) the given (install-time) files name, and
    the data files those that reach the network read (``data_files``)."""
    out: set[str] = set()
    for file in files:
        if len(file.data) <= MAX_PROFILE_BYTES and _reaches_network(file):
            out |= _host_problems(_without_comments(file), manifest)[0]
            for data in data_files([file], all_files):
                out |= _host_problems(data.data, manifest)[0]
    return out


def bounded_fetch(findings: Sequence[Finding], manifest: Manifest,
                  install_files: Sequence[PackageFile],
                  previous_scripts: Mapping[str, str] | None,
                  previous_hosts: set[str] | None = None,
                  all_files: Sequence[PackageFile] = ()) -> list[Finding]:
    """The findings, with a platform-binary fetch at install weighed low when it is bounded
    (module docstring), plus one info finding that says so; unchanged otherwise.

    ``previous_scripts``: the previous release's scripts (None when unknown: no relaxation);
    ``previous_hosts``: the hosts its install-time files named, when its files are known."""
    fetch = [f for f in findings if f.install_time and f.rule in FETCH_RULES
             and not f.preexisting and f.severity.rank >= Severity.MEDIUM.rank]
    if not fetch or previous_scripts is None:
        return list(findings)
    hooks = {k: v for k, v in manifest.lifecycle_scripts.items() if k in RUN_ON_INSTALL}
    before = {k: v for k, v in previous_scripts.items() if k in RUN_ON_INSTALL}
    if not hooks or hooks != before:
        return list(findings)
    paths = {f.path for f in install_files}
    for f in findings:
        in_install = f.install_time or f.file in paths
        if in_install and f.severity.rank >= Severity.MEDIUM.rank and (
                f.capability not in FETCH_CAPABILITIES or f.rule.startswith("CW-CHAIN-")):
            return list(findings)
    hosts: set[str] = set()
    commands = PackageFile("package.json#scripts", "\n".join(hooks.values()).encode())
    for file in (*install_files, commands):
        if len(file.data) > MAX_PROFILE_BYTES:
            return list(findings)
        if not _reaches_network(file):
            continue
        found, problems = _host_problems(_without_comments(file), manifest)
        for data in data_files([file], all_files):
            more, trouble = _host_problems(data.data, manifest)
            found, problems = found | more, [*problems, *trouble]
        if problems:
            return list(findings)
        hosts |= found
    if previous_hosts is not None and hosts - previous_hosts:
        return list(findings)
    where = ", ".join(sorted(hosts)) or "no host named in the files"
    note = (f" [bounded: the install hook is unchanged from the previous release and fetches "
            f"only from {where}]")
    out = [replace(f, severity=Severity.LOW, message=f.message + note) if f in fetch else f
           for f in findings]
    out.append(Finding(
        rule="CW-INSTALL-PLATFORM-BINARY", severity=Severity.INFO,
        technique="install-time-execution", capability="install-script",
        message=("install hook fetches a platform binary within bounds (hooks unchanged from "
                 f"the previous release; hosts: {where}; nothing but fetch, write and run): "
                 "its download findings weigh low"),
        file=fetch[0].file, line=fetch[0].line, snippet=fetch[0].snippet, install_time=True,
        reference="https://docs.npmjs.com/cli/configuring-npm/package-json#optionaldependencies"))
    return out


def new_install_hosts(manifest: Manifest, install_files: Sequence[PackageFile],
                      changed: set[str], previous_hosts: set[str],
                      all_files: Sequence[PackageFile] = (), bump: str = "unknown",
                      findings: Sequence[Finding] = ()) -> list[Finding]:
    """Places (``place``) that install-time files new or changed in this release name and the
    previous release's install-time files did not: a hook that starts contacting somewhere
    new. A file's places include those of the data files it reads (``data_files``; the file
    counts as changed when one of them did) and of every non-code, non-documentation file
    changed in this release that holds a URL. Critical when the file downloads and runs
    something (a patch or minor release fetching its binary from a new place)."""
    out: list[Finding] = []
    install_paths = {f.path for f in install_files}
    loose = [f for f in all_files if f.path in changed and f.path not in install_paths
             and f.path != "package.json" and not f.path.lower().endswith(CODE_EXT)
             and not _documentation(f.path) and _text(f) and _URL.search(f.data)]
    for file in install_files:
        if len(file.data) > MAX_PROFILE_BYTES or not _reaches_network(file):
            continue
        data = data_files([file], all_files)
        if file.path not in changed and not any(d.path in changed for d in data):
            continue
        hosts, _ = _host_problems(_without_comments(file), manifest)
        for extra in {d.path: d for d in (*data, *loose)}.values():
            hosts |= _host_problems(extra.data, manifest)[0]
        fresh = sorted(hosts - previous_hosts)
        if not fresh:
            continue
        runs = [f for f in findings if f.file == file.path and f.rule in FETCH_RULES
                and f.severity.rank >= Severity.MEDIUM.rank]
        # an unchanged install file is not scanned again: its text tells whether it writes
        # and runs what it fetched
        text = _without_comments(file)
        writes_runs = bool(_SPAWN.search(text) and _WRITE.search(text))
        critical = (bool(runs) or writes_runs) and bump in ("patch", "minor", "prerelease")
        out.append(Finding(
            rule="CW-DIFF-INSTALL-NEW-HOST",
            severity=Severity.CRITICAL if critical else Severity.MEDIUM,
            technique="install-time-execution", capability="network",
            message=(f"{file.path} runs at install and now names "
                     f"{', '.join(h[:80] for h in fresh[:5])}, which the previous release's "
                     "install-time files never named"
                     + (f"; it downloads and runs a file in a {bump} release"
                        if critical else "")),
            file=file.path, line=runs[0].line if critical and runs else None,
            snippet=runs[0].snippet if critical and runs else None, install_time=True,
            reference="https://attack.mitre.org/techniques/T1105/"))
    return out


def install_env_child(install_files: Sequence[PackageFile], changed: set[str],
                      before: Mapping[str, PackageFile]) -> list[Finding]:
    """A changed install-time file that fetches, writes and runs a file and now starts a child
    process with the whole environment (``env: process.env``): every token of the installing
    user handed to what it downloaded."""
    out: list[Finding] = []
    for file in install_files:
        if file.path not in changed or len(file.data) > MAX_PROFILE_BYTES:
            continue
        text = _without_comments(file)
        m = _ENV_ALL.search(text)
        # only a file that fetches, writes and runs: a test runner's spawn helper passing its
        # environment on is ordinary
        if m is None or not (_SPAWN.search(text) and _WRITE.search(text)
                             and _reaches_network(file)):
            continue
        old = before.get(file.path)
        if old is not None and _ENV_ALL.search(_without_comments(old)):
            continue
        out.append(Finding(
            rule="CW-DIFF-INSTALL-ENV-CHILD", severity=Severity.HIGH,
            technique="install-time-execution", capability="secrets",
            message=(f"{file.path} runs at install and now starts a process with the whole "
                     "environment (every token of the installing user)"),
            file=file.path, line=text[:m.start()].count(b"\n") + 1,
            snippet=m.group(0)[:120].decode("utf-8", "replace").strip(), install_time=True,
            reference="https://attack.mitre.org/techniques/T1552/001/"))
    return out


# -- prebuilt native addons -------------------------------------------------------------------
_OS_FORMAT = {"linux": "elf", "linuxmusl": "elf", "android": "elf", "freebsd": "elf", "openbsd": "elf",
              "netbsd": "elf", "sunos": "elf", "aix": "elf", "darwin": "macho", "win32": "pe"}
_PLATFORM_DIR = re.compile(r"^(?P<os>[a-z0-9]+)-(?P<arch>[a-z0-9_]+)$")


def library_format(data: bytes) -> str | None:
    """"elf", "macho" or "pe" when ``data`` is a shared library of that format (a Node addon),
    None for an executable, a truncated header or anything else."""
    if data.startswith(b"\x7fELF") and len(data) >= 64:
        little = data[5] == 1
        wide = data[4] == 2
        end = "<" if little else ">"
        (e_type,) = struct.unpack_from(end + "H", data, 16)
        if e_type != 3:  # ET_DYN: a shared object (an executable is ET_EXEC, or DYN + INTERP)
            return None
        if wide:
            (phoff,) = struct.unpack_from(end + "Q", data, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 54)
        else:
            (phoff,) = struct.unpack_from(end + "I", data, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 42)
        for i in range(min(phnum, 256)):
            at = phoff + i * phentsize
            if at + 4 > len(data):
                return None
            (p_type,) = struct.unpack_from(end + "I", data, at)
            if p_type == 3:  # PT_INTERP: a (position-independent) executable
                return None
        return "elf"
    if data[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe") and len(data) >= 16:
        (filetype,) = struct.unpack_from("<I", data, 12)
        return "macho" if filetype in (6, 8) else None  # MH_DYLIB, MH_BUNDLE
    if data.startswith(b"MZ") and len(data) >= 64:
        (lfanew,) = struct.unpack_from("<I", data, 60)
        if lfanew + 24 > len(data) or data[lfanew:lfanew + 4] != b"PE\x00\x00":
            return None
        (characteristics,) = struct.unpack_from("<H", data, lfanew + 22)
        return "pe" if characteristics & 0x2000 else None  # IMAGE_FILE_DLL
    return None


def _addon_key(path: str, data: bytes) -> tuple[str, str] | None:
    """(folder holding the platform folders, addon name) for a prebuilt addon whose format is
    its platform folder's; None otherwise."""
    if not path.endswith(".node"):
        return None
    parent = posixpath.dirname(path)
    m = _PLATFORM_DIR.match(posixpath.basename(parent))
    if not m or _OS_FORMAT.get(m.group("os")) is None:
        return None
    if library_format(data) != _OS_FORMAT[m.group("os")]:
        return None
    name = posixpath.basename(path).split(".")[0]
    return posixpath.dirname(parent), name


def prebuilt_addons(findings: Sequence[Finding], files: Sequence[PackageFile]) -> list[Finding]:
    """CW-DROPPER-BINARY findings of one addon prebuilt for several platforms, folded into one
    (the first, its message naming the platforms); every other binary finding as it was. A
    folder of platform folders where any binary is not such an addon (an executable, a format
    that is not its platform's) folds nothing."""
    by_path = {f.path: f for f in files}
    groups: dict[tuple[str, str, bool], list[Finding]] = {}
    spoiled: set[str] = set()
    for f in findings:
        if f.rule != "CW-DROPPER-BINARY" or f.file not in by_path:
            continue
        key = _addon_key(f.file, by_path[f.file].data)
        if key is None:
            spoiled.add(posixpath.dirname(posixpath.dirname(f.file)))
        else:
            groups.setdefault((*key, f.preexisting), []).append(f)
    folded: dict[int, Finding | None] = {}
    for (folder, name, _pre), group in groups.items():
        platforms = sorted({posixpath.basename(posixpath.dirname(f.file or "")) for f in group})
        if len(platforms) < 2 or folder in spoiled:
            continue
        first = group[0]
        folded[id(first)] = replace(first, message=(
            f"prebuilt native addon {name}.node for {len(platforms)} platforms "
            f"({', '.join(platforms)[:200]}), each a shared library in its platform's format: "
            "one addon, counted once"))
        for f in group[1:]:
            folded[id(f)] = None
    out: list[Finding] = []
    for f in findings:
        if id(f) not in folded:
            out.append(f)
        elif (new := folded[id(f)]) is not None:
            out.append(new)
    return out
