"""``atnl bench soak`` (``make soak``): a bounded soak of a real ``atnl serve`` on loopback.

Concurrent clients send mixed traffic (encode, interpolate, hallucinate, decode, the model
list, health checks, and a share of bad requests) for a fixed time, then stop. The run
passes when no answer is a 5xx (or a dropped connection), the bad requests all get their
4xx, and the server's resident memory grows by less than MAX_RSS_GROWTH from the end of
the warm-up to the end of the run. Figures go to ``soak.md`` and ``soak.json``.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.report import hardware, md_table, write_report
from benchmarks.servers import Server, memory_mb
from benchmarks.service import percentile_ms, sample_requests
from models import load_dataset

MAX_RSS_GROWTH = 0.05
"""Largest accepted growth of the server's resident memory over the measured part of a soak."""
WARMUP_FRACTION = 0.2
"""Share of the run before the baseline RSS is taken: allocator pools, torch's caches and
the first requests of each kind settle there."""
RSS_WINDOW_SECONDS = 5.0
"""Baseline and final RSS are medians over this many seconds of samples (one a second)."""
MIX = {
    "encode": 4,
    "interpolate": 2,
    "hallucinate": 1,
    "decode": 3,
    "models": 1,
    "healthz": 1,
    "bad-image": 1,
    "bad-latents": 1,
    "bad-labels": 1,
    "unknown-model": 1,
}
"""Relative weight of each kind of request in the traffic."""
BAD = {"bad-image": 422, "bad-latents": 422, "bad-labels": 422, "unknown-model": 404}
"""Status each bad request must get."""


@dataclass
class SoakConfig:
    seconds: float = 180.0
    """Length of the run, warm-up included."""
    concurrency: int = 4
    """Clients sending at once (each waits for its answer before the next request)."""
    seed: int = 0

    @classmethod
    def quick(cls, **kw: Any) -> SoakConfig:
        return cls(**{"seconds": 20.0, "concurrency": 2, **kw})


@dataclass
class Tally:
    """Per kind of request: latencies and status counts."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)
    transport_errors: int = 0

    def add(self, kind: str, status: int, took: float) -> None:
        self.seconds.setdefault(kind, []).append(took)
        counts = self.statuses.setdefault(kind, {})
        counts[str(status)] = counts.get(str(status), 0) + 1

    def count(self, predicate: Any) -> int:
        return sum(n for counts in self.statuses.values() for s, n in counts.items() if predicate(int(s)))


def requests(data: Any, latent_dim: int) -> dict[str, dict[str, Any]]:
    """Method, path and body of each kind in MIX, on real mnist-5k digits (decode: a latent of the
    model's ``latent_dim``)."""
    good = sample_requests(data)
    garbage = [("files", ("x.png", b"\x89PNG\r\n\x1a\nnot really", "image/png"))]
    return {
        "encode": {"method": "POST", "url": "/v1/encode", **good["encode"]},
        "interpolate": {"method": "POST", "url": "/v1/interpolate", **good["interpolate"]},
        "hallucinate": {"method": "POST", "url": "/v1/hallucinate", **good["hallucinate"]},
        "decode": {"method": "POST", "url": "/v1/decode", "json": {"latents": [[0.0] * latent_dim]}},
        "models": {"method": "GET", "url": "/v1/models"},
        "healthz": {"method": "GET", "url": "/healthz"},
        "bad-image": {"method": "POST", "url": "/v1/encode", "files": garbage},
        "bad-latents": {
            "method": "POST",
            "url": "/v1/decode",
            "content": b'{"latents": [[NaN, 1e400]]}',
            "headers": {"content-type": "application/json"},
        },
        "bad-labels": {
            "method": "POST",
            "url": "/v1/hallucinate",
            "files": good["hallucinate"]["files"][:2],
            "data": {"labels": "0,no-such-label", "per_class": "1"},
        },
        "unknown-model": {"method": "POST", "url": "/v1/models/no-such-model/activate", "json": {}},
    }


async def traffic(base_url: str, bodies: dict[str, dict[str, Any]], cfg: SoakConfig, deadline: float) -> Tally:
    """``cfg.concurrency`` clients sending requests drawn from MIX until ``deadline`` (monotonic)."""
    import httpx

    tally = Tally()
    kinds, weights = list(MIX), list(MIX.values())

    async def client(k: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(cfg.seed * 1000 + k)
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            req = bodies[kind]
            start = time.perf_counter()
            try:
                r = await http.request(req["method"], req["url"], **{k: v for k, v in req.items() if k not in ("method", "url")})
            except httpx.TransportError:
                tally.transport_errors += 1
                continue
            tally.add(kind, r.status_code, time.perf_counter() - start)

    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        await asyncio.gather(*(client(k, http) for k in range(cfg.concurrency)))
    return tally


async def sample_rss(pid: int, deadline: float, samples: list[tuple[float, float]], start: float) -> None:
    """Append (seconds since ``start``, RSS MiB) once a second until ``deadline``."""
    while time.monotonic() < deadline:
        samples.append((time.monotonic() - start, memory_mb(pid)))
        await asyncio.sleep(1.0)


async def soak(base_url: str, pid: int, bodies: dict[str, dict[str, Any]], cfg: SoakConfig) -> tuple[Tally, list]:
    start = time.monotonic()
    deadline = start + cfg.seconds
    samples: list[tuple[float, float]] = []
    tally, _ = await asyncio.gather(traffic(base_url, bodies, cfg, deadline), sample_rss(pid, deadline, samples, start))
    samples.append((time.monotonic() - start, memory_mb(pid)))
    return tally, samples


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def rss_figures(samples: list[tuple[float, float]], seconds: float) -> dict[str, float]:
    """Baseline (the first RSS_WINDOW_SECONDS after the warm-up), final (the last ones) and peak
    RSS, MiB, and the growth from baseline to final."""
    warm = seconds * WARMUP_FRACTION
    base = [m for t, m in samples if warm <= t <= warm + RSS_WINDOW_SECONDS] or [samples[0][1]]
    final = [m for t, m in samples if t >= samples[-1][0] - RSS_WINDOW_SECONDS]
    baseline, end = median(base), median(final)
    return {"baseline_mb": baseline, "final_mb": end, "peak_mb": max(m for _, m in samples), "growth": end / baseline - 1}


def summarise(tally: Tally, rss: dict[str, float], cfg: SoakConfig) -> dict[str, Any]:
    server_errors = tally.count(lambda s: s >= 500) + tally.transport_errors
    bad_wrong = sum(n for kind, want in BAD.items() for s, n in tally.statuses.get(kind, {}).items() if int(s) != want)
    good_failed = sum(n for kind in MIX if kind not in BAD for s, n in tally.statuses.get(kind, {}).items() if s != "200")
    total = sum(len(v) for v in tally.seconds.values())
    per_kind = {
        kind: {
            "requests": len(tally.seconds[kind]),
            "p50_ms": percentile_ms(tally.seconds[kind], 50),
            "p99_ms": percentile_ms(tally.seconds[kind], 99),
            "statuses": tally.statuses[kind],
        }
        for kind in MIX
        if kind in tally.seconds
    }
    passed = server_errors == 0 and bad_wrong == 0 and good_failed == 0 and rss["growth"] < MAX_RSS_GROWTH
    return {
        "config": asdict(cfg),
        "requests": total,
        "rps": total / cfg.seconds,
        "server_errors": server_errors,
        "transport_errors": tally.transport_errors,
        "good_requests_failed": good_failed,
        "bad_requests_wrongly_answered": bad_wrong,
        "rss": rss,
        "max_rss_growth": MAX_RSS_GROWTH,
        "passed": passed,
        "per_kind": per_kind,
    }


def report_body(result: dict[str, Any]) -> str:
    rss, cfg, model = result["rss"], result["config"], result["model"]
    rows = []
    for kind, k in result["per_kind"].items():
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(k["statuses"].items()))
        rows.append([kind, k["requests"], f"{k['p50_ms']:.1f}", f"{k['p99_ms']:.1f}", statuses])
    verdict = "passed" if result["passed"] else "FAILED"
    return (
        f"{cfg['seconds']:.0f} s of mixed traffic from {cfg['concurrency']} concurrent clients against one `atnl serve` on "
        f"loopback, serving a {model['latent_dim']}-d {model['family']} model: **{verdict}**.\n\n"
        f"- requests: {result['requests']} ({result['rps']:.1f}/s); 5xx or dropped connections: {result['server_errors']}; "
        f"good requests not 200: {result['good_requests_failed']}; bad requests without their 4xx: "
        f"{result['bad_requests_wrongly_answered']}\n"
        f"- server RSS: {rss['baseline_mb']:.0f} MiB after the warm-up ({WARMUP_FRACTION:.0%} of the run), "
        f"{rss['final_mb']:.0f} MiB at the end, peak {rss['peak_mb']:.0f} MiB: growth {rss['growth']:+.2%} "
        f"(limit {MAX_RSS_GROWTH:.0%})\n\n" + md_table(["request", "count", "p50 ms", "p99 ms", "statuses"], rows)
    )


def run_soak(checkpoint: Path, out: Path, cfg: SoakConfig, command: str, tmp: Path) -> dict[str, Any]:
    """Serve ``checkpoint`` from a fresh store in ``tmp``, soak it, write soak.md + soak.json."""
    from models import read_meta

    data = load_dataset("mnist-5k")
    store = tmp / "store"
    shutil.copytree(checkpoint, store / "soak")
    meta = read_meta(store / "soak")
    latent_dim = int(meta["model_config"]["latent_dim"])
    bodies = requests(data, latent_dim)
    server = Server.serve({"ATNL_MODEL_STORE": str(store)}, tmp, name="serve")  # no token: the bad requests expect no 401
    try:
        server.start()
        tally, samples = asyncio.run(soak(server.url, server.pid, bodies, cfg))
        if (code := server.exited()) is not None:
            raise RuntimeError(f"atnl serve died during the soak (exit {code}); see {server.log}")
    finally:
        server.stop()
    result = summarise(tally, rss_figures(samples, cfg.seconds), cfg)
    result["model"] = {"family": meta.get("family"), "latent_dim": latent_dim, "checkpoint": str(checkpoint)}
    result["rss_samples"] = [[round(t, 1), round(m, 1)] for t, m in samples]
    write_report(out, "soak", "Soak: mixed traffic on loopback", command, hardware("cpu"), report_body(result), result)
    return result
