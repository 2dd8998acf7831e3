#!/usr/bin/env python3
"""The filtering proxy's cost: latency overhead, concurrency and memory, against direct upstream.

A static upstream registry (uvicorn, serving real full-format packuments recorded once from the
npm registry into ``bench/.cache/proxy``, with ETags) runs on loopback; ``chainwatch proxy`` runs
in front of it as a user would start it (a fresh process, its own SQLite database). Then:

1. latency: for each packument, sequential GETs straight to upstream and through the proxy
   (abbreviated, as npm asks at install time), p50 of each and the difference; once with the
   proxy asking upstream every time (``--cache-ttl 0s``: the filtering cost alone) and once with
   its default cache;
2. concurrency: ``--clients`` clients (default 200) sharing ``--requests`` requests (default
   10,000) through the proxy; errors counted;
3. memory: the proxy's resident set size sampled every 1,000 requests of step 2;
4. install: the real ``npm install`` of a project with ``--install`` synthetic packages (default
   150, each with a tarball and recent publish times, so the proxy scans them), straight from
   the upstream and through the proxy, in the same run: once through the proxy to warm its
   scan cache, then direct and proxied installs with an empty npm cache each, wall time of each
   and the ratio (``--install 0`` skips it, ``--only install`` runs only it);
5. overhead (``--only overhead``): the proxy's own cost per packument request, revalidating
   every time (``--cache-ttl 0s``): ``--rounds`` GETs of one packument (``--package``, chalk by
   default: its real packument, recorded once) alternating between the upstream and the proxy
   in the same run, abbreviated and full; the p50 of each and of the per-pair difference.

    python bench/proxy.py
    python bench/proxy.py --only overhead --rounds 400
    python bench/proxy.py --requests 2000 --clients 50 --rounds 20
    python bench/proxy.py --only install --install 150
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.verdaccio import free_port, wait_up

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache" / "proxy"
PACKAGES = ("chalk", "debug", "ms", "semver", "commander", "lodash", "react", "express",
            "axios", "typescript", "left-pad", "is-number", "ansi-styles", "supports-color",
            "color-convert", "uuid", "minimist", "glob", "yargs", "@babel/core")
ABBREVIATED = "application/vnd.npm.install-v1+json"


def record_packuments() -> list[Path]:
    """Full packuments of PACKAGES, fetched once; synthetic ones when the registry is away."""
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    with httpx.Client(timeout=60, follow_redirects=True) as client:
        for name in PACKAGES:
            path = CACHE / (name.replace("/", "__") + ".json")
            if not path.exists():
                try:
                    r = client.get("https://registry.npmjs.org/" + name.replace("/", "%2f"),
                                   headers={"Accept": "application/json"})
                    r.raise_for_status()
                    path.write_bytes(r.content)
                except httpx.HTTPError as exc:
                    print(f"  {name}: registry unavailable ({exc}); using a synthetic packument")
                    path.write_text(json.dumps(synthetic(name)))
            paths.append(path)
    return paths


def synthetic(name: str, count: int = 200) -> dict[str, object]:
    versions = [f"1.{i // 20}.{i % 20}" for i in range(count)]
    return {"name": name, "dist-tags": {"latest": versions[-1]},
            "time": {v: f"2024-01-{1 + i % 28:02d}T00:00:00.000Z" for i, v in enumerate(versions)},
            "versions": {v: {"name": name, "version": v, "description": "x" * 200,
                             "dependencies": {"ms": "^2.1.3"},
                             "dist": {"tarball": f"https://registry.invalid/{name}/-/{name}-{v}.tgz",
                                      "integrity": "sha512-" + "A" * 86 + "=="}}
                         for v in versions}}


def make_install_set(folder: Path, count: int, port: int) -> list[str]:
    """``count`` small packages (packument + tarball each) under ``folder``: cwb-0 … cwb-N,
    each depending on the next two, published three days ago. Returns their names."""
    import base64
    import hashlib
    import io
    import tarfile
    from datetime import UTC, datetime, timedelta

    folder.mkdir(parents=True, exist_ok=True)
    # past the default 2-day minimum age, within the 30-day scan window: the proxy scans each
    now = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    names = [f"cwb-{i}" for i in range(count)]
    for i, name in enumerate(names):
        deps = {n: "^1.0.0" for n in names[i + 1 : i + 3]}
        manifest = {"name": name, "version": "1.0.0", "main": "index.js", "dependencies": deps}
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for path, text in (("package/package.json", json.dumps(manifest)),
                               ("package/index.js",
                                f"module.exports = function () {{ return {i}; }};\n" * 40)):
                data = text.encode()
                info = tarfile.TarInfo(path)
                info.size, info.mtime = len(data), 1_700_000_000
                tar.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
        (folder / f"{name}-1.0.0.tgz").write_bytes(raw)
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(raw).digest()).decode()
        doc = {"name": name, "dist-tags": {"latest": "1.0.0"},
               "time": {"created": now, "modified": now, "1.0.0": now},
               "versions": {"1.0.0": {**manifest, "dist": {
                   "tarball": f"http://127.0.0.1:{port}/{name}/-/{name}-1.0.0.tgz",
                   "integrity": integrity, "shasum": hashlib.sha1(raw).hexdigest()}}}}
        (folder / f"{name}.json").write_text(json.dumps(doc))
    return names


def npm_install(registry: str, names: list[str], tmp: Path, label: str) -> float:
    """Seconds for ``npm install`` of a project depending on ``names``, with an empty cache."""
    import shutil

    project = tmp / f"project-{label}"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir()
    (project / "package.json").write_text(json.dumps(
        {"name": "bench", "version": "1.0.0", "dependencies": {n: "^1.0.0" for n in names}}))
    started = time.perf_counter()
    subprocess.run(["npm", "install", "--registry", registry, "--cache", str(tmp / f"npm-{label}"),
                    "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel", "error"],
                   cwd=project, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def install(args: argparse.Namespace) -> None:
    """Step 4: direct vs proxied ``npm install`` wall time, in one run."""
    import shutil

    if shutil.which("npm") is None:
        print("install: npm not found; skipped")
        return
    port = free_port()
    upstream = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        names = make_install_set(tmp / "upstream", args.install, port)
        procs: list[subprocess.Popen[bytes]] = [subprocess.Popen(
            [sys.executable, __file__, "--serve-upstream", str(tmp / "upstream"),
             "--port", str(port)])]
        try:
            wait_up(upstream + names[0])
            proxy, proxy_url = start_proxy(upstream, tmp, "10s")
            procs.append(proxy)
            roots = names[: max(1, len(names) // 3)]
            warm = npm_install(proxy_url, roots, tmp, "warm")
            print(f"\nnpm install of {len(roots)} direct dependencies ({len(names)} packages), "
                  f"empty npm cache each time:")
            print(f"  through the proxy, scanning each release once: {warm:6.1f} s")
            runs = []
            for round_ in range(args.install_rounds):
                direct = npm_install(upstream, roots, tmp, f"direct{round_}")
                proxied = npm_install(proxy_url, roots, tmp, f"proxied{round_}")
                runs.append((direct, proxied))
                print(f"  direct {direct:6.1f} s, through the proxy (warm) {proxied:6.1f} s: "
                      f"{proxied / direct:.2f}x")
            direct = statistics.median(d for d, _ in runs)
            proxied = statistics.median(p for _, p in runs)
            print(f"  median: direct {direct:.1f} s, proxied {proxied:.1f} s, "
                  f"ratio {proxied / direct:.2f}x")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)


def serve_upstream(folder: Path, port: int) -> None:
    """The static upstream: one file per package, with an ETag and 304 on If-None-Match;
    tarballs (``name-1.0.0.tgz`` in the folder) at ``/name/-/name-1.0.0.tgz``."""
    import hashlib

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    docs: dict[str, tuple[bytes, str]] = {}
    for path in folder.glob("*.json"):
        raw = path.read_bytes()
        name = json.loads(raw).get("name") or path.stem.replace("__", "/")
        docs[name] = (raw, '"' + hashlib.sha1(raw).hexdigest() + '"')

    async def packument(request: Request) -> Response:
        name = request.path_params["name"].replace("%2f", "/").replace("%2F", "/")
        if "/-/" in name:
            file = folder / name.rsplit("/", 1)[-1]
            if file.suffix == ".tgz" and file.is_file():
                return Response(file.read_bytes(), media_type="application/octet-stream")
            return Response('{"error":"not found"}', 404, media_type="application/json")
        hit = docs.get(name)
        if hit is None:
            return Response('{"error":"not found"}', 404, media_type="application/json")
        if request.headers.get("if-none-match") == hit[1]:
            return Response(status_code=304, headers={"ETag": hit[1]})
        return Response(hit[0], media_type="application/json", headers={"ETag": hit[1]})

    app = Starlette(routes=[Route("/{name:path}", packument)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_proxy(upstream: str, tmp: Path, ttl: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "CHAINWATCH_DATA_DIR": str(tmp), "CHAINWATCH_CACHE_DIR": str(tmp)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainwatch", "proxy", "--upstream", upstream, "--listen",
         f"127.0.0.1:{port}", "--cache-ttl", ttl, "--db", f"sqlite:///{tmp / f'p{port}.db'}"],
        env=env, stdout=subprocess.DEVNULL,
        stderr=open(os.environ["CW_BENCH_PROXY_LOG"], "ab")  # noqa: SIM115
        if os.environ.get("CW_BENCH_PROXY_LOG") else subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    wait_up(url + "-/chainwatch/health")
    return proc, url


def p50_ms(client: httpx.Client, url: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        r = client.get(url, headers={"Accept": ABBREVIATED})
        r.raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def latency(names: list[str], upstream: str, proxy: str, rounds: int) -> list[tuple[str, float, float]]:
    out = []
    with httpx.Client(timeout=60) as client:
        for name in names:
            path = name.replace("/", "%2f")
            client.get(proxy + path)  # warm both caches
            direct = p50_ms(client, upstream + path, rounds)
            through = p50_ms(client, proxy + path, rounds)
            out.append((name, direct, through))
    return out


async def load(proxy: str, names: list[str], requests: int, clients: int,
               pid: int) -> tuple[int, float, list[float]]:
    errors = 0
    done = 0
    samples = [rss_mb(pid)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(names[i % len(names)].replace("/", "%2f"))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors, done
        while True:
            try:
                path = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                r = await client.get(proxy + path, headers={"Accept": ABBREVIATED})
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            done += 1
            if done % 1000 == 0:
                samples.append(rss_mb(pid))

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    return errors, time.perf_counter() - started, samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pairwise_ms(client: httpx.Client, direct: str, proxied: str, accept: str,
                rounds: int) -> tuple[list[float], list[float]]:
    """``rounds`` GETs of each URL, alternating (so load on the machine hits both alike)."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(rounds):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            started = time.perf_counter()
            r = client.get((direct, proxied)[which], headers={"Accept": accept})
            r.raise_for_status()
            times[which].append((time.perf_counter() - started) * 1000)
    return times


def overhead(args: argparse.Namespace) -> None:
    """Step 5: the proxy's own cost per packument request with ``--cache-ttl 0s``."""
    paths = record_packuments()
    names = {json.loads(p.read_bytes()).get("name") or p.stem: p for p in paths}
    if args.package not in names:
        print(f"overhead: {args.package} is not among the recorded packuments")
        return
    port = free_port()
    upstream = f"http://127.0.0.1:{port}/"
    procs: list[subprocess.Popen[bytes]] = [subprocess.Popen(
        [sys.executable, __file__, "--serve-upstream", str(CACHE), "--port", str(port)])]
    try:
        wait_up(upstream + "chalk")
        with tempfile.TemporaryDirectory() as tmp:
            proxy, proxy_url = start_proxy(upstream, Path(tmp), "0s")
            procs.append(proxy)
            path = args.package.replace("/", "%2f")
            size = names[args.package].stat().st_size
            print(f"{args.package}: {size / 1e3:.0f} kB full packument; {args.rounds} requests "
                  f"each, alternating upstream and proxy (--cache-ttl 0s: the proxy revalidates "
                  f"every request with its ETag)")
            with httpx.Client(timeout=60) as client:
                for label, accept in (("abbreviated", ABBREVIATED), ("full", "application/json")):
                    pairwise_ms(client, upstream + path, proxy_url + path, accept, 20)  # warm-up
                    cpu = cpu_seconds(proxy.pid)
                    direct, through = pairwise_ms(client, upstream + path, proxy_url + path,
                                                  accept, args.rounds)
                    cpu_ms = (cpu_seconds(proxy.pid) - cpu) * 1000 / args.rounds
                    diffs = [t - d for d, t in zip(direct, through, strict=True)]
                    print(f"  {label:12} direct p50 {statistics.median(direct):6.2f} ms, proxy "
                          f"p50 {statistics.median(through):6.2f} ms: proxy's own cost p50 "
                          f"{statistics.median(through) - statistics.median(direct):5.2f} ms "
                          f"(per-pair p50 {statistics.median(diffs):5.2f} ms, p90 "
                          f"{statistics.quantiles(diffs, n=10)[-1]:5.2f} ms); proxy CPU "
                          f"{cpu_ms:5.2f} ms per request; load {os.getloadavg()[0]:.1f}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40, help="sequential GETs per packument")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--install", type=int, default=150,
                        help="synthetic packages for the npm install step (0: skip it)")
    parser.add_argument("--install-rounds", type=int, default=3)
    parser.add_argument("--only", choices=["install", "overhead"])
    parser.add_argument("--package", default="chalk", help="the packument of --only overhead")
    parser.add_argument("--serve-upstream", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.port)
        return
    if args.only == "install":
        install(args)
        return
    if args.only == "overhead":
        overhead(args)
        return
    paths = record_packuments()
    names = [json.loads(p.read_bytes()).get("name") or p.stem for p in paths]
    sizes = {n: p.stat().st_size for n, p in zip(names, paths, strict=True)}
    port = free_port()
    upstream = f"http://127.0.0.1:{port}/"
    procs: list[subprocess.Popen[bytes]] = [subprocess.Popen(
        [sys.executable, __file__, "--serve-upstream", str(CACHE), "--port", str(port)])]
    try:
        wait_up(upstream + "chalk")
        with tempfile.TemporaryDirectory() as tmp:
            uncached, uncached_url = start_proxy(upstream, Path(tmp), "0s")
            cached, cached_url = start_proxy(upstream, Path(tmp), "10s")
            procs += [uncached, cached]
            print(f"{len(names)} real packuments, {sum(sizes.values()) / 1e6:.1f} MB in all "
                  f"(median {statistics.median(sizes.values()) / 1e3:.0f} kB)\n")
            print(f"{'package':16} {'size kB':>8} {'direct':>8} {'proxy':>8} {'+ms':>7} "
                  f"{'cached':>8} {'+ms':>7}")
            plain = latency(names, upstream, uncached_url, args.rounds)
            warm = latency(names, upstream, cached_url, args.rounds)
            for (name, direct, through), (_, _, hot) in zip(plain, warm, strict=True):
                print(f"{name:16} {sizes[name] / 1e3:8.0f} {direct:8.2f} {through:8.2f} "
                      f"{through - direct:7.2f} {hot:8.2f} {hot - direct:7.2f}")
            over = [t - d for _, d, t in plain]
            over_hot = [t - d for _, d, t in warm]
            small = [t - d for n, d, t in plain if sizes[n] < 1_000_000]
            print(f"\noverhead p50 over packuments, asking upstream every time: "
                  f"{statistics.median(over):.2f} ms (packuments under 1 MB: "
                  f"{statistics.median(small):.2f} ms; worst {max(over):.2f} ms)")
            print(f"overhead p50 over packuments, default 10 s cache: "
                  f"{statistics.median(over_hot):.2f} ms")
            ratio = statistics.median(t for _, _, t in plain) / statistics.median(
                d for _, d, _ in plain)
            print(f"proxy / direct p50 latency ratio (uncached): {ratio:.2f}x")
            errors, elapsed, rss = asyncio.run(
                load(cached_url, names, args.requests, args.clients, cached.pid))
            print(f"\n{args.requests} requests from {args.clients} concurrent clients: "
                  f"{errors} errors, {args.requests / elapsed:.0f} req/s")
            print("proxy RSS every 1,000 requests (MB): " + " ".join(f"{m:.0f}" for m in rss))
            print(f"RSS growth from the 1,000th request to the last: {rss[-1] - rss[1]:+.1f} MB"
                  if len(rss) > 2 else "")
        if args.install:
            install(args)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
