"""The Markdown of ``atnl bench service``: its rows, the checks each run is held to, the per-op
table of docs/API.md §8.2, the soak by request, and where the service's CPU goes."""

from __future__ import annotations

from typing import Any

from benchmarks.report import md_table

SERVICE = "service"
BARE = ("bare FastAPI endpoint", "bare FastAPI endpoint, 1 torch thread")

BEFORE: dict[str, Any] = {
    "commit": "cc857a0",
    "encode64": "3,570-3,680 img/s, 0.27-0.29 ms CPU an image",
    "encode1": "218-398 req/s, p99 193-790 ms, 2.9-3.2 ms CPU a request",
    "healthz": "p99 53 ms",
    "profile": {
        "model forward (torch)": 37.0,
        "thread hand-off and waits (anyio, threading, queue)": 20.9,
        "image decoding (Pillow, numpy)": 15.2,
        "event loop (uvloop: sockets, polling)": 14.4,
        "HTTP, multipart, routing (uvicorn, starlette, fastapi)": 10.7,
        "the service's own code": 1.6,
        "validation and JSON (pydantic, json)": 0.1,
    },
}
"""The service before batching (commit cc857a0: no batching, 4 inference threads x torch's 2
threads, sync dependencies in the thread pool), served from a worktree on the same checkpoint
and loaded by this bench's load generator on this machine (2 runs of rows 1-2, then one under
py-spy, rows 1-2 together as ``--profile`` records them)."""


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def big_cell(r: dict[str, Any], ceiling: dict[str, Any] | None = None) -> str:
    cell = f"{fmt_int(r['img_s'])} img/s, {r['cpu_ms_per_image']:.3f} ms CPU an image"
    if ceiling is not None:
        cell += f" (efficiency {ceiling['cpu_ms_per_image'] / r['cpu_ms_per_image']:.2f})"
    return cell + failures(r)


def small_cell(r: dict[str, Any]) -> str:
    cell = f"{fmt_int(r['rps'])} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
    cell += f", {r['cpu_ms_per_image']:.2f} ms CPU a request"
    return cell + failures(r)


def failures(r: dict[str, Any]) -> str:
    return f", {r['failures']} failed {r['statuses']}" if r.get("failures") else ""


def headline(record: dict[str, Any]) -> str:
    servers, ceiling = record["servers"], record["in_process"]
    service = servers[SERVICE]
    others = [name for name in servers if name != SERVICE]
    header = ["work", "in process", "the service (batching on)", *others]
    dash = ["-"] * len(others)
    soak, morph = service["soak"], service["interpolate14"]
    rows = [
        ["encode, 64 images a request, 8 concurrent", big_cell(ceiling["encode64"]),
         big_cell(service["encode64"], ceiling["encode64"]),
         *[big_cell(servers[n]["encode64"], ceiling["encode64"]) for n in others]],
        ["encode, 1 image a request, 32 concurrent", "-", small_cell(service["encode1"]),
         *[small_cell(servers[n]["encode1"]) for n in others]],
        ["interpolate, 14 frames, 1 at a time (interleaved)", f"p50 {morph['in_process']['p50_ms']:.1f} ms",
         f"p50 {morph['service']['p50_ms']:.1f} ms (HTTP floor: `/healthz` p50 {morph['healthz']['p50_ms']:.1f} ms)"
         + failures(morph["service"]), *dash],
        ["`/healthz` p99 while hallucinate saturates", "-",
         f"{service['healthz_under_hallucinate']['p99_ms']:.1f} ms", *dash],
        [f"RSS over {soak['requests']:,} mixed requests", "-",
         f"{soak['rss_before_mb']:.0f} -> {soak['rss_after_mb']:.0f} MiB ({soak['rss_growth_percent']:+.1f} %; "
         f"{service['rss_start_mb']:.0f} MiB when ready, then rows 1-4 and {soak['warmup_requests']:,} mixed requests "
         "before the first reading)" + failures(soak), *dash],
    ]  # fmt: skip
    return md_table(header, rows)


def checks(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The checks the service is held to, each measured in this run."""
    servers, ceiling = record["servers"], record["in_process"]
    service = servers[SERVICE]
    efficiency = ceiling["encode64"]["cpu_ms_per_image"] / service["encode64"]["cpu_ms_per_image"]
    multipart = ceiling["multipart_encode64"]
    parse_ms = multipart["tally_ms_per_image"] + multipart["form_ms_per_image"]
    parse_share = parse_ms / ceiling["encode64"]["cpu_ms_per_image"]
    bare = max((servers[n]["encode1"]["rps"] for n in BARE if n in servers), default=float("nan"))
    small = service["encode1"]
    morph, morph_ceiling = (service["interpolate14"][k]["p50_ms"] for k in ("service", "in_process"))
    health = service["healthz_under_hallucinate"]["p99_ms"]
    growth = service["soak"]["rss_growth_percent"]
    minutes = record["seconds"] / 60
    return [
        {"criterion": "encode 64 x 8: server CPU per image <= 1.1x in process (efficiency >= 0.9)",
         "measured": f"efficiency {efficiency:.2f}; multipart parsing alone costs {parse_share:.0%} of the in-process "
                     f"figure ({multipart['tally_ms_per_image']:.3f} + {multipart['form_ms_per_image']:.3f} ms an image: "
                     "BodyCaps' tally, Starlette's form parser)",
         "met": efficiency >= 0.9},
        {"criterion": "encode 1 x 32: >= 1.2x the faster bare endpoint's req/s",
         "measured": f"{small['rps']:.0f} / {bare:.0f} = {small['rps'] / bare:.2f}x", "met": small["rps"] >= 1.2 * bare},
        {"criterion": "encode 1 x 32: p99 <= 250 ms", "measured": f"{small['p99_ms']:.0f} ms", "met": small["p99_ms"] <= 250},
        {"criterion": "interpolate 14 frames p50 <= in process + 3 ms",
         "measured": f"{morph:.1f} ms vs {morph_ceiling:.1f} + 3 ms", "met": morph <= morph_ceiling + 3},
        {"criterion": "/healthz p99 < 50 ms while hallucinate saturates", "measured": f"{health:.1f} ms", "met": health < 50},
        {"criterion": f"RSS grows < 5 % over {service['soak']['requests']:,} mixed requests",
         "measured": f"{growth:+.1f} %", "met": growth < 5},
        {"criterion": "the bench runs in <= 5 minutes", "measured": f"{minutes:.1f} min", "met": minutes <= 5},
        {"criterion": "no failed request in any row", "measured": f"{total_failures(record)} failed",
         "met": total_failures(record) == 0},
    ]  # fmt: skip


def total_failures(record: dict[str, Any]) -> int:
    count = 0
    for result in record["servers"].values():
        for row in result.values():
            if isinstance(row, dict):
                count += int(row.get("failures", 0)) + sum(int(r.get("failures", 0)) for r in row.values() if isinstance(r, dict))
    return count


def per_op(record: dict[str, Any]) -> str:
    service, ceiling = record["servers"][SERVICE], record["in_process"]
    header = ["op", "API req/s", "API p50 ms", "API p99 ms", "failures"]
    header += ["in-process req/s", "in-process p50 ms", "in-process p99 ms"]
    names = {"encode": "encode1", "interpolate": "interpolate8", "hallucinate": "hallucinate"}
    rows = [
        [op, f"{r['rps']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", r["failures"],
         f"{c['rps']:.1f}", f"{c['p50_ms']:.1f}", f"{c['p99_ms']:.1f}"]
        for op, r in service["ops"].items()
        for c in [ceiling[names[op]]]
    ]  # fmt: skip
    return md_table(header, rows)


def profile_section(record: dict[str, Any]) -> str:
    profile = record["servers"][SERVICE].get("profile")
    now = (profile or {}).get("kinds_percent", {})
    kinds = sorted({*BEFORE["profile"], *now}, key=lambda k: -max(BEFORE["profile"].get(k, 0.0), now.get(k, 0.0)))
    lines = [
        "## Where the service's CPU goes (py-spy, share of samples)",
        "",
        f"Rows 1 and 2 under py-spy (an extra pass, not measured above). Before: commit {BEFORE['commit']} "
        f"on this machine with this load generator: row 1 {BEFORE['encode64']}; row 2 {BEFORE['encode1']}; "
        f"`/healthz` under hallucinate {BEFORE['healthz']}. Idle worker threads count as samples too "
        "(py-spy does not always see them wait).",
        "",
        md_table(
            ["work", f"before ({BEFORE['commit']}) %", "now %"],
            [[k, BEFORE["profile"].get(k, 0.0), now.get(k, "-")] for k in kinds],
        ),
    ]
    if profile:
        lines += ["", "Functions with the most samples of their own, now:", ""]
        lines.append(md_table(["function", "%"], [[f"`{f}`", p] for f, p in profile["top_self_percent"]]))
    else:
        lines += ["", "(Not recorded in this run: pass --profile, with py-spy installed and allowed to attach.)"]
    return "\n".join(lines)


def render(record: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The report body, and the checks (also stored in the JSON)."""
    cfg, settings = record["config"], record["settings"]
    result = checks(record)
    soak = record["servers"][SERVICE]["soak"]
    intro = (
        "One run, every server in turn on loopback, the load generated on the same machine "
        "(benchmarks.load: keep-alive HTTP/1.1, requests prepared as bytes); other work on this machine was not "
        "stopped (see the load average above), so absolute figures are noisy and the ratios are the ones of this run. "
        f"PNG digits from mnist-5k, `preprocess=none`. Model: {record['checkpoint']['family']}, "
        f"{record['checkpoint']['model_config'].get('latent_dim')}-d latents. Server CPU from psutil. "
        f"torch threads {record['torch_threads']} (the service's default, also used in process); "
        f"inference threads {settings['inference_threads']}; batching: max {settings['batch_max_images']} images, "
        f"max delay {settings['batch_max_delay_ms']} ms. The bare endpoint is benchmarks/bare_app.py."
    )
    done = [[c["criterion"], c["measured"], "yes" if c["met"] else "**no**"] for c in result]
    body = [
        intro, "", "## Rows", "", headline(record), "",
        "## Checks", "", md_table(["criterion", "measured", "met"], done),
        "", f"## Per op ({cfg['op_requests']} requests, {cfg['concurrency']} concurrent clients; docs/API.md §8.2)", "",
        per_op(record), "",
        "## The soak, by request", "",
        md_table(["request", "count", "p50 ms", "p99 ms", "failures"],
                 [[n, r["requests"], f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", r["failures"]]
                  for n, r in soak["by_request"].items()]),
        "", profile_section(record),
    ]  # fmt: skip
    return "\n".join(body), result
