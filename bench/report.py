"""Targets, the markdown report, the latency plot, and py-spy profile summaries."""

from __future__ import annotations

import math
import statistics
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOTES = Path(__file__).with_name("notes.md")
SOAK = Path(__file__).with_name("soak.md")

SETUP_ORDER = ("single", "single0", "cluster", "browser", "pages", "baseline")


def _find(raw: dict[str, Any], setup: str, scenario: str) -> dict[str, Any] | None:
    for result in raw["results"]:
        if result["setup"] == setup and result["scenario"] == scenario:
            return dict(result)
    return None


def cpu_pair_scenario(label: str, cpu_pair: Sequence[Any], round_: int) -> str:
    """The CPU pair's scenario of `label` ("text" or "md") in round `round_` (from 1)."""
    n, rate, tokens = cpu_pair
    return f"cpu-{label}-{n}x{rate:g}-{tokens}" + (f"-r{round_}" if round_ > 1 else "")


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _target(name: str, value: str, met: bool | None, note: str = "") -> dict[str, Any]:
    return {"target": name, "value": value, "met": met, "note": note}


def capacity(raw: dict[str, Any], setup: str, bound_ms: float) -> tuple[float, int] | None:
    """The most tokens/s delivered on the ladder with p99 (window excluded) within bound."""
    best: tuple[float, int] | None = None
    for r in raw["results"]:
        if r["setup"] != setup or not r["scenario"].startswith("ladder-"):
            continue
        if r["ok"] < r["streams"] or not r["latency_ex_ms"]["p99"] <= bound_ms:
            continue
        if best is None or r["tokens_per_s"] > best[0]:
            best = (r["tokens_per_s"], r["streams"])
    return best


def evaluate(raw: dict[str, Any]) -> list[dict[str, Any]]:
    plan = raw["plan"]
    rate = f"{plan['rate']:g}"
    big, one = max(plan["concurrency"]), min(plan["concurrency"])
    mid = sorted(plan["concurrency"])[-2]
    fast = f"1x{plan['fast_rate']:g}"
    small_fast, large_fast = min(plan["fast_tokens"]), max(plan["fast_tokens"])
    out = []

    r = _find(raw, "single", f"{big}x{rate}")
    if r:
        p50, p99 = r["latency_ex_ms"]["p50"], r["latency_ex_ms"]["p99"]
        zero = _find(raw, "single0", f"{big}x{rate}")
        note = (
            f"with the window: p50 {_f(r['latency_ms']['p50'])}, p99 {_f(r['latency_ms']['p99'])}"
            " ms"
        )
        if zero:
            note += (
                f"; run with CHAT_COALESCE_MS=0: p50 {_f(zero['latency_ms']['p50'])}, "
                f"p99 {_f(zero['latency_ms']['p99'])} ms"
            )
        out.append(
            _target(
                f"Added latency per delta, {big} streams x {rate} tokens/s, one process, "
                "window excluded: p50 <= 5 ms",
                f"{_f(p50)} ms",
                p50 <= 5,
                note,
            )
        )
        out.append(_target("... and p99 <= 25 ms", f"{_f(p99)} ms", p99 <= 25))
    for setup in ("single", "cluster"):
        found = [_find(raw, setup, f"{fast}-{n}") for n in plan["fast_tokens"]]
        rows = [x for x in found if x and x.get("done_to_last_text_ms") is not None]
        if not rows:
            continue
        worst = max(x["done_to_last_text_ms"] for x in rows)
        final = max(x["done_to_final_ms"] for x in rows)
        out.append(
            _target(
                f"One stream at {plan['fast_rate']:g} tokens/s ({setup}): all text on the client "
                "within 100 ms of the upstream's [DONE]",
                f"{_f(worst)} ms",
                worst <= 100,
                f"the final rendered message {_f(final)} ms after [DONE]",
            )
        )
        fps = [(x["delta_frames_per_reply"], x["stream_seconds"], x["coalesce_ms"]) for x in rows]
        ok = all(frames <= seconds * 1000 / window + 2 for frames, seconds, window in fps)
        worst_fps = max(frames / max(seconds, 1e-9) for frames, seconds, _ in fps)
        out.append(
            _target(
                f"... ({setup}) frames per second bounded by the coalescing window "
                f"(1 / {rows[0]['coalesce_ms']:g} ms = {1000 / rows[0]['coalesce_ms']:.1f}/s; "
                "allowed: streaming time / window + 2 frames)",
                f"{worst_fps:.1f} frames/s",
                ok,
            )
        )
    streaming = [
        r
        for r in raw["results"]
        if r["setup"] in ("single", "single0", "cluster") and "framing_per_delta_max" in r
    ]
    if streaming:
        worst = max(streaming, key=lambda x: x["framing_per_delta_max"])
        out.append(
            _target(
                "Framing per delta frame <= 64 bytes on top of the text",
                f"max {worst['framing_per_delta_max']} B, mean "
                f"{_f(worst['framing_per_delta_mean'])} B",
                worst["framing_per_delta_max"] <= 64,
                f"worst in {worst['setup']} / {worst['scenario']}",
            )
        )
        over = sum(x["final_over_limit"] for x in streaming)
        ratio = max(x["final_bytes_max"] / x["final_limit_min"] for x in streaming)
        chrome = max(x.get("final_overhead_max", 0) for x in streaming)
        out.append(
            _target(
                "One final rendered swap <= 2 x the text + 1 KB",
                f"{over} of {sum(x['ok'] for x in streaming)} replies over the limit; largest "
                f"at {ratio:.2f} of its limit",
                over == 0,
                f"the rendered message adds up to {chrome:,} bytes to the text",
            )
        )
    for setup in ("single", "cluster"):
        a = _find(raw, setup, f"{fast}-{small_fast}")
        b = _find(raw, setup, f"{fast}-{large_fast}")
        if a and b and "wire_bytes_per_reply" in a and "wire_bytes_per_reply" in b:
            ratio = b["wire_bytes_per_reply"] / a["wire_bytes_per_reply"]
            limit = 10.5 * large_fast / 10000
            out.append(
                _target(
                    f"Bytes on the wire ({setup}): a {large_fast:,}-token reply <= "
                    f"{limit:g} x a {small_fast:,}-token one",
                    f"{ratio:.2f} x ({_f(b['wire_bytes_per_reply'], 0)} / "
                    f"{_f(a['wire_bytes_per_reply'], 0)} B)",
                    ratio <= limit,
                )
            )
    if streaming:
        over = sum(x["db_writes_over"] for x in streaming)
        worst = max(streaming, key=lambda x: x["db_writes_max"])
        out.append(
            _target(
                "Database writes per reply <= 3 + one per checkpoint interval "
                f"({raw.get('checkpoint_seconds', 2):g} s), none per delta",
                f"max {_f(worst['db_writes_max'], 0)} (allowed {worst['db_writes_allowed']}, "
                f"{worst['tokens']} deltas)",
                over == 0,
                f"{over} replies over" if over else "",
            )
        )
    for setup in ("single", "cluster"):
        r = _find(raw, setup, "idle")
        if r:
            out.append(
                _target(
                    f"Resident memory per idle WebSocket ({setup}) <= 64 KiB",
                    f"{_f(r['rss_per_connection_kib'])} KiB",
                    r["rss_per_connection_kib"] <= 64,
                    f"{r['alive']} connections",
                )
            )
    for setup in ("single", "cluster"):
        a = _find(raw, setup, f"{one}x{rate}")
        b = _find(raw, setup, f"{mid}x{rate}")
        if a and b and "finish_s" in a and "finish_s" in b:
            ratio = b["finish_s"]["max"] / a["finish_s"]["max"]
            out.append(
                _target(
                    f"{mid} concurrent streams ({setup}) finish in <= 1.2 x the time of one",
                    f"{ratio:.2f} x (slowest {b['finish_s']['max']:.2f} s, median "
                    f"{b['finish_s']['p50']:.2f} s / {a['finish_s']['max']:.2f} s)",
                    ratio <= 1.2,
                    f"each from its own submit to its saved reply on the client; submits spread "
                    f"over {b.get('ramp_s', 0):.3g} s",
                )
            )
    _relay_cpu_targets(raw, out)
    for bound in (plan["p99_bound_ms"], plan["p99_relaxed_ms"]):
        _capacity_target(raw, out, bound)
    _markdown_targets(raw, out)
    _page_targets(raw, out)
    return out


def _cpu_note(r: dict[str, Any]) -> str:
    steady = r.get("steady_cpu_us_per_token")
    return (
        f"{_f(r.get('cpu_percent'), 0)}% of a core; in the steady middle, every reply "
        f"streaming ({_f(r.get('steady_s'))} s): {_f(steady, 0)} µs per token"
    )


def _relay_cpu_targets(raw: dict[str, Any], out: list[dict[str, Any]]) -> None:
    """Server CPU per token relayed (one process, and the cluster against it), and the
    streams one process holds."""
    plan = raw["plan"]
    rate = f"{plan['rate']:g}"
    target = plan.get("cpu_target_us", 120.0)
    for n in (min(x for x in plan["concurrency"] if x > 1), max(plan["concurrency"])):
        r = _find(raw, "single", f"{n}x{rate}")
        if not r or "cpu_us_per_token" not in r or not r.get("ok"):
            continue
        floor = _find(raw, "baseline", f"{n}x{rate}")
        note = _cpu_note(r)
        if floor and floor.get("cpu_us_per_token") is not None:
            note += f"; the bare reader, same run: {_f(floor['cpu_us_per_token'], 0)} µs per token"
        rounds = [p.single for p in _alternating_pairs(raw, f"{n}x{rate}")]
        if rounds:
            # The same scenario again in the alternating rounds: how far the host's speed moved.
            note += (
                f"; in the {len(rounds)} alternating rounds {_f(min(rounds), 0)}-"
                f"{_f(max(rounds), 0)} µs (median {_f(statistics.median(rounds), 0)})"
            )
        out.append(
            _target(
                f"Server CPU per token relayed, one process, {n} streams x {rate} tokens/s "
                f"<= {target:g} µs",
                f"{_f(r['cpu_us_per_token'], 0)} µs",
                r["cpu_us_per_token"] <= target,
                note,
            )
        )
    hold = plan.get("hold")
    r = _find(raw, "single", f"{hold}x{rate}") if hold else None
    if r and "latency_ms" in r:
        p99 = r["latency_ms"]["p99"]
        bound = plan.get("hold_p99_ms", 60.0)
        out.append(
            _target(
                f"One process holds {hold} streams x {rate} tokens/s: added latency p99 <= "
                f"{bound:g} ms, coalescing window included",
                f"{_f(p99)} ms",
                p99 <= bound and r["ok"] == r["streams"],
                f"{r['ok']}/{r['streams']} replies; p50 {_f(r['latency_ms']['p50'])} ms; "
                f"window excluded p99 {_f(r['latency_ex_ms']['p99'])} ms; server CPU "
                f"{_f(r.get('cpu_us_per_token'), 0)} µs per token",
            )
        )
    for n in (min(x for x in plan["concurrency"] if x > 1), max(plan["concurrency"])):
        single = _find(raw, "single", f"{n}x{rate}")
        cluster = _find(raw, "cluster", f"{n}x{rate}")
        if not (single and cluster and single.get("ok") and cluster.get("ok")):
            continue
        ratio = cluster["cpu_us_per_token"] / single["cpu_us_per_token"]
        value = (
            f"{ratio:.2f} x ({_f(cluster['cpu_us_per_token'], 0)} / "
            f"{_f(single['cpu_us_per_token'], 0)} µs per token)"
        )
        pairs = _alternating_pairs(raw, f"{n}x{rate}")
        if pairs:
            # The pairs measured back to back decide: the setups' own runs are minutes apart.
            # Each pair's ratio is corrected for the host's speed at the time by the fake
            # upstream's CPU over the same scenario (the same work in both setups); where a
            # run did not record it, the pairs' ratios stand as measured.
            raw_ratios = [p.ratio for p in pairs]
            corrected = [p.corrected for p in pairs]
            if all(c is not None for c in corrected):
                ratios = [c for c in corrected if c is not None]
                ratio = statistics.median(ratios)
                value = (
                    f"{ratio:.2f} x, median of {len(pairs)} alternating pairs corrected for "
                    "the host's speed by the fake upstream's CPU in the same scenario ("
                    + ", ".join(f"{r:.2f}" for r in ratios)
                    + f"); as measured, median {statistics.median(raw_ratios):.2f} x ("
                    + ", ".join(
                        f"{r:.2f} = {_f(p.cluster, 0)} / {_f(p.single, 0)}"
                        for r, p in zip(raw_ratios, pairs, strict=True)
                    )
                    + f" µs per token); in the setups' own runs {value}"
                )
            else:
                ratio = statistics.median(raw_ratios)
                value = (
                    f"{ratio:.2f} x, median of {len(pairs)} alternating pairs ("
                    + ", ".join(
                        f"{r:.2f} = {_f(p.cluster, 0)} / {_f(p.single, 0)}"
                        for r, p in zip(raw_ratios, pairs, strict=True)
                    )
                    + f" µs per token); in the setups' own runs {value}"
                )
        tokens = cluster["ok"] * cluster["tokens"]
        redis = (cluster.get("other_cpu_s") or {}).get("redis")
        out.append(
            _target(
                f"Cluster ({_shape(cluster)} on Redis), {n} streams: server CPU per token, all "
                "server processes together, <= 1.3 x one process's",
                value,
                ratio <= 1.3,
                "Redis besides: "
                + (f"{_f(1e6 * redis / max(tokens, 1), 0)} µs per token" if redis else "not read")
                + f"; steady middle {_f(cluster.get('steady_cpu_us_per_token'), 0)} / "
                f"{_f(single.get('steady_cpu_us_per_token'), 0)} µs",
            )
        )


def upstream_cpu_s(result: dict[str, Any]) -> float | None:
    """The fake upstream's CPU seconds over a scenario: the same work whichever setup it
    served, so it measures how fast the host ran at the time."""
    if result.get("upstream_cpu_s"):
        return float(result["upstream_cpu_s"])
    percent = (result.get("load_cpu_percent") or {}).get("upstream")
    makespan = result.get("makespan_s")
    return percent * makespan / 100 if percent and makespan else None


@dataclass(frozen=True)
class Pair:
    """One alternating round: each setup's CPU per token, and the upstream's CPU seconds in
    each scenario."""

    single: float
    cluster: float
    single_upstream_s: float | None
    cluster_upstream_s: float | None

    @property
    def ratio(self) -> float:
        return self.cluster / self.single

    @property
    def corrected(self) -> float | None:
        """The ratio with each side divided by the upstream's CPU in its scenario: a host that
        ran slower for one of the two slows the upstream as much as the server."""
        if not (self.single_upstream_s and self.cluster_upstream_s):
            return None
        return self.ratio * self.single_upstream_s / self.cluster_upstream_s


def _alternating_pairs(raw: dict[str, Any], scenario: str) -> list[Pair]:
    """One process and the cluster in each round of bench.run.alternating_rounds in which both
    ran every reply."""
    pairs = []
    for k in range(1, raw["plan"].get("alternating_rounds", 0) + 1):
        single = _find(raw, "single", f"alt{k}-{scenario}")
        cluster = _find(raw, "cluster", f"alt{k}-{scenario}")
        if single and cluster and single["ok"] == single["streams"] == cluster["ok"]:
            pairs.append(
                Pair(
                    single["cpu_us_per_token"],
                    cluster["cpu_us_per_token"],
                    upstream_cpu_s(single),
                    upstream_cpu_s(cluster),
                )
            )
    return pairs


def _page_targets(raw: dict[str, Any], out: list[dict[str, Any]]) -> None:
    """Server CPU per request and per turn (bench.turns)."""
    for r in raw["results"]:
        if r["setup"] != "pages":
            continue
        out.append(
            _target(
                f"Server CPU per request: {r['label']} <= {r['target_ms']:g} ms",
                f"{r['cpu_ms_per']:.1f} ms",
                r["cpu_ms_per"] <= r["target_ms"],
                f"{r['n']} in a row, one at a time; wall p50 {r['wall_ms_p50']:.1f} ms",
            )
        )


def _pages_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| request | repeated | server CPU each (ms) | target (ms) | wall time p50 / max (ms) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['n']} | {r['cpu_ms_per']:.2f} | {r['target_ms']:g} | "
            f"{r['wall_ms_p50']:.1f} / {r['wall_ms_max']:.1f} |"
        )
    idle = rows[0].get("idle_ms_per_s") if rows else None
    if idle is not None:
        lines += ["", f"The server process idle, before these: {idle:.2f} ms of CPU per second."]
    return lines


def _markdown_targets(raw: dict[str, Any], out: list[dict[str, Any]]) -> None:
    """Progressive rendering: bytes, server CPU and the browser with markdown-heavy text."""
    plan = raw["plan"]
    fast = f"1x{plan['fast_rate']:g}"
    sizes = plan.get("md_tokens") or (1000, 10000)
    small, large = min(sizes), max(sizes)
    b = _find(raw, "single", f"md-{fast}-{large}")
    if b and "wire_bytes_per_reply" in b:
        out.append(
            _target(
                f"Bytes on the wire, a markdown-heavy {large:,}-token reply (single) <= 2 x its "
                "text + its rendered markup (`content_html`) + 64 B per frame",
                f"{_f(b['wire_bytes_per_reply'], 0)} B, limit {_f(b['wire_limit_per_reply'], 0)}"
                f" B ({b['wire_vs_limit_max']:.2f} of it)",
                b["wire_over_limit"] == 0,
                f"text {_f(b['text_bytes_per_reply'], 0)} B, markup "
                f"{_f(b['markup_bytes_per_reply'], 0)} B, {_f(b['frames_per_reply'], 0)} frames",
            )
        )
    a = _find(raw, "single", f"md-{fast}-{small}")
    if a and b and "wire_bytes_per_reply" in a and "wire_bytes_per_reply" in b:
        ratio = b["wire_bytes_per_reply"] / a["wire_bytes_per_reply"]
        limit = 10.5 * large / 10000
        out.append(
            _target(
                f"Bytes on the wire, markdown-heavy (single): a {large:,}-token reply <= "
                f"{limit:g} x a {small:,}-token one",
                f"{ratio:.2f} x ({_f(b['wire_bytes_per_reply'], 0)} / "
                f"{_f(a['wire_bytes_per_reply'], 0)} B)",
                ratio <= limit,
            )
        )
    cpu_pair = plan.get("cpu_pair") or (10, 100.0, 1000)
    n, rate, tokens = cpu_pair
    pairs = []  # (markdown, plain) of each round both ran in
    for k in range(1, (plan.get("cpu_pair_rounds") or 1) + 1):
        plain = _find(raw, "single", cpu_pair_scenario("text", cpu_pair, k))
        heavy = _find(raw, "single", cpu_pair_scenario("md", cpu_pair, k))
        if plain and heavy and plain.get("ok") and heavy.get("ok"):
            pairs.append((heavy, plain))
    if pairs:
        ratios = [heavy["cpu_us_per_token"] / plain["cpu_us_per_token"] for heavy, plain in pairs]
        ratio = statistics.median(ratios)
        each = ", ".join(
            f"{r:.2f} = {_f(heavy['cpu_us_per_token'], 0)} / {_f(plain['cpu_us_per_token'], 0)}"
            for r, (heavy, plain) in zip(ratios, pairs, strict=True)
        )
        heavy, plain = pairs[0]
        out.append(
            _target(
                f"Server CPU per token, markdown-heavy <= 1.3 x plain text ({n} streams x "
                f"{rate:g} tokens/s x {tokens:,} tokens, single)",
                f"{ratio:.2f} x, median of {len(pairs)} alternating pair"
                f"{'s' if len(pairs) > 1 else ''} ({each} µs per token)",
                ratio <= 1.3,
                f"characters per token: markdown {_f(heavy.get('chars_per_token'), 2)}, plain "
                f"{_f(plain.get('chars_per_token'), 2)}",
            )
        )
    for r in raw["results"]:
        if not r["scenario"].startswith("browser-"):
            continue
        name = (
            f"Browser: longest long task while a markdown-heavy {r['tokens']:,}-token reply "
            f"streams at {r['rate']:g} tokens/s <= 50 ms"
        )
        if r.get("skipped"):
            out.append(_target(name, f"skipped: {r['skipped']}", None))
        elif not r.get("ok"):
            out.append(_target(name, "failed", False, "; ".join(r.get("errors", []))[:300]))
        else:
            out.append(
                _target(
                    name,
                    f"{_f(r['long_task_max_ms'], 0)} ms",
                    r["long_task_max_ms"] <= 50,
                    f"{r['long_task_count']} long tasks, total blocking time "
                    f"{_f(r['blocking_ms'], 0)} ms; chromium {r.get('chromium', '')}".rstrip("; "),
                )
            )


def _capacity_target(raw: dict[str, Any], out: list[dict[str, Any]], bound: float) -> None:
    single, cluster = capacity(raw, "single", bound), capacity(raw, "cluster", bound)
    if any(r["scenario"].startswith("ladder-") for r in raw["results"]):
        met = None if not single else bool(cluster and cluster[0] >= 1.6 * single[0])
        value = (f"{cluster[0] / single[0]:.2f} x" if single and cluster else "cannot compare") + (
            f" (single {_f(single[0], 0) if single else 'none'} tokens/s"
            f"{f' at {single[1]} streams' if single else ''}; "
            f"cluster {_f(cluster[0], 0) if cluster else 'none'} tokens/s"
            f"{f' at {cluster[1]} streams' if cluster else ''})"
        )
        rows = [r for r in raw["results"] if r["setup"] == "cluster"]
        shape = _shape(rows[0]) if rows else "the cluster"
        needed = sum(rows[0].get("processes") or (2, 2)) if rows else 4
        cores = raw.get("machine", {}).get("cores") or 0
        note = ""
        if cores < needed:
            # A core for each server process at least: on fewer, with PostgreSQL, Redis, the
            # upstream and the clients besides, the cluster cannot deliver more than one
            # process. The row is kept, not judged.
            met = None
            note = f"needs {needed}+ cores to show; this machine has {cores}"
        out.append(
            _target(
                f"{shape} on Redis deliver >= 1.6 x the single-process throughput at "
                f"the same p99 (most tokens/s with p99 <= {bound:g} ms, window excluded)",
                value,
                met,
                note,
            )
        )


def _shape(result: dict[str, Any]) -> str:
    """The cluster's processes as a run had them ("2 web + 2 workers")."""
    webs, workers = result.get("processes") or (2, 2)  # runs before the field: the default
    return f"{webs} web + {workers} worker{'s' if workers != 1 else ''}"


def targets_text(targets: list[dict[str, Any]]) -> str:
    lines = ["", "Targets:"]
    for t in targets:
        mark = {True: "MET    ", False: "NOT MET", None: "n/a    "}[t["met"]]
        lines.append(
            f"  {mark} {t['target']}: {t['value']}" + (f" ({t['note']})" if t["note"] else "")
        )
    return "\n".join(lines)


# --- Plot -------------------------------------------------------------------------------


def plot(samples: dict[tuple[str, str], dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scenarios = []
    for _setup, scenario in samples:
        if scenario not in scenarios and not scenario.startswith("ladder-"):
            scenarios.append(scenario)
    if not scenarios:
        return
    cols = min(3, len(scenarios))
    rows = math.ceil(len(scenarios) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    styles = {
        ("single", "latency"): ("one process, with window", "tab:blue", "--"),
        ("single", "latency_ex"): ("one process, window excluded", "tab:blue", "-"),
        ("single0", "latency"): ("one process, CHAT_COALESCE_MS=0", "tab:green", "-"),
        ("cluster", "latency"): ("Redis cluster, with window", "tab:red", "--"),
        ("cluster", "latency_ex"): ("Redis cluster, window excluded", "tab:red", "-"),
        ("baseline", "latency"): ("baseline: upstream read directly", "black", ":"),
    }
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        for (setup, key), (label, color, line) in styles.items():
            values = samples.get((setup, scenario), {}).get(key)
            if not values:
                continue
            ms = np.sort(np.clip(np.asarray(values) * 1000, 0.01, None))
            y = np.arange(1, len(ms) + 1) / len(ms)
            ax.plot(ms, y, line, color=color, label=label, linewidth=1.4)
        ax.set_xscale("log")
        ax.set_xlim(0.05, 30000)
        ax.set_ylim(0, 1.0)
        ax.axvline(5, color="grey", linewidth=0.6)
        ax.axvline(25, color="grey", linewidth=0.6)
        # (wrapped: a CPU pair's titles are wider than their plot)
        ax.set_title(textwrap.fill(_scenario_title(scenario), 52), fontsize=10)
        ax.set_xlabel("added latency per delta (ms, log)")
        ax.set_ylabel("fraction of deltas")
        ax.grid(True, which="both", alpha=0.25)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9)
    fig.suptitle("chatsite: added latency per delta (CDF; grey lines at 5 and 25 ms)")
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- Markdown ---------------------------------------------------------------------------


def _lat(d: dict[str, float]) -> str:
    return f"{_f(d['p50'])} / {_f(d['p90'])} / {_f(d['p99'])} / {_f(d['max'])}"


STREAM_ROWS: list[tuple[str, Any]] = [
    (
        "replies complete on the client / saved",
        lambda r: f"{r['ok']}/{r['streams']}" + (f" / {r['saved_ok']}" if "saved_ok" in r else ""),
    ),
    (
        "added latency per delta, with window: p50 / p90 / p99 / max (ms)",
        lambda r: _lat(r["latency_ms"]),
    ),
    (
        "added latency per delta, window excluded: p50 / p90 / p99 / max (ms)",
        lambda r: _lat(r["latency_ex_ms"]),
    ),
    (
        "added time to first token: p50 / p99 (ms)",
        lambda r: f"{_f(r['added_ttft_ms']['p50'])} / {_f(r['added_ttft_ms']['p99'])}",
    ),
    (
        "tokens/s delivered: all streams / one stream (median)",
        lambda r: f"{_f(r.get('tokens_per_s'), 0)} / {_f(r.get('tokens_per_s_stream'))}",
    ),
    (
        "WebSocket frames/s: all streams / one stream (median)",
        lambda r: f"{_f(r.get('frames_per_s'), 0)} / {_f(r.get('frames_per_s_stream'))}",
    ),
    (
        "frames per reply: text deltas / all",
        lambda r: f"{_f(r.get('delta_frames_per_reply'))} / {_f(r.get('frames_per_reply'))}",
    ),
    (
        "bytes on the wire per reply / reply text (bytes)",
        lambda r: (
            f"{_f(r.get('wire_bytes_per_reply'), 0)} / {_f(r.get('text_bytes_per_reply'), 0)}"
        ),
    ),
    (
        "bytes on the wire per reply / limit 2 x text + rendered markup + 64 B per frame",
        lambda r: f"{_f(r['wire_bytes_per_reply'], 0)} / {_f(r['wire_limit_per_reply'], 0)}",
    ),
    (
        "reply text: characters per token / stored rendered markup (bytes)",
        lambda r: f"{_f(r['chars_per_token'], 2)} / {_f(r['markup_bytes_per_reply'], 0)}",
    ),
    (
        "frames per reply that settle blocks or draw the tail again",
        lambda r: _f(r["block_frames_per_reply"]),
    ),
    (
        "stored rendering equals render_markdown(text)",
        lambda r: f"{r['rendered_ok']}/{r['ok']}",
    ),
    (
        "framing per delta frame: mean / max (bytes)",
        lambda r: f"{_f(r.get('framing_per_delta_mean'))} / {_f(r.get('framing_per_delta_max'))}",
    ),
    (
        "final rendered swap: largest / its limit 2 x text + 1 KB / beyond the text (bytes)",
        lambda r: (
            f"{_f(r.get('final_bytes_max'))} / {_f(r.get('final_limit_min'))} / "
            f"{_f(r.get('final_overhead_max'))}"
        ),
    ),
    (
        "database writes per reply: max / allowed",
        lambda r: f"{_f(r.get('db_writes_max'), 0)} / {_f(r.get('db_writes_allowed'))}",
    ),
    (
        "submit to saved reply on the client: p50 / max (s); all done (s)",
        lambda r: (
            f"{_f(r['finish_s']['p50'], 2)} / {_f(r['finish_s']['max'], 2)}; "
            f"{_f(r.get('makespan_s'), 2)}"
            if "finish_s" in r
            else "–"
        ),
    ),
    (
        "upstream [DONE] to last text / to final swap (ms, worst)",
        lambda r: f"{_f(r.get('done_to_last_text_ms'))} / {_f(r.get('done_to_final_ms'))}",
    ),
    (
        "server CPU: seconds (% of one core) / µs per token",
        lambda r: (
            f"{_f(r.get('cpu_s'), 2)} ({_f(r.get('cpu_percent'), 0)}%) / "
            f"{_f(r.get('cpu_us_per_token'), 0)}"
            if "cpu_s" in r and r["setup"] != "baseline"
            else "–"
        ),
    ),
    (
        "server CPU per token in the steady middle (every reply streaming): µs (over s)",
        lambda r: f"{_f(r['steady_cpu_us_per_token'], 0)} ({_f(r['steady_s'])})",
    ),
    (
        "Redis CPU (shared server, beside the cluster): seconds / µs per token",
        lambda r: (
            f"{_f(r['other_cpu_s']['redis'], 2)} / "
            f"{_f(1e6 * r['other_cpu_s']['redis'] / max(r['ok'] * r['tokens'], 1), 0)}"
        ),
    ),
    (
        "reader CPU (this baseline client): seconds / µs per token",
        lambda r: (
            f"{_f(r['cpu_s'], 2)} / {_f(r['cpu_us_per_token'], 0)}"
            if r["setup"] == "baseline"
            else "–"
        ),
    ),
    ("server resident memory, peak (MiB)", lambda r: _f(r.get("rss_peak_mib"))),
    (
        "client event-loop lag: p99 / max (ms)",
        lambda r: f"{_f(r['client_lag_ms']['p99'])} / {_f(r['client_lag_ms']['max'])}",
    ),
]


def markdown(raw: dict[str, Any], targets: list[dict[str, Any]], png_name: str) -> str:
    m = raw["machine"]
    plan = raw["plan"]
    v = m.get("versions", {})
    lines = [
        "# Benchmarks",
        "",
        "How fast chatsite relays a model's reply to the browser, and what it costs. Written by "
        "the benchmark harness in `bench/`; do not edit by hand (the notes come from "
        "`bench/notes.md`).",
        "",
        f"- **Command:** `.venv/bin/{raw['command']}` ({raw['elapsed_s'] / 60:.0f} min)",
        f"- **Date:** {raw['date']}",
        f"- **Machine:** {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, "
        f"{m['os']}, Python {m['python']}",
        "- **Versions:** "
        + ", ".join(f"{k} {val}" for k, val in v.items() if k not in ("redis", "postgresql"))
        + (f"; {v['redis'].split(' sha')[0]}" if "redis" in v else "")
        + (f"; {v['postgresql']}" if "postgresql" in v else ""),
        f"- **Load average** (1, 5, 15 min) before the run: {m.get('load_before')}, after: "
        f"{m.get('load_after')}",
        "",
        "Everything runs on this one machine: the fake upstream (its own process), the server "
        "processes, Redis and PostgreSQL, and all clients (one asyncio process). They share "
        f"{m['cores']} cores, so the clients and the upstream take CPU from the server, and the "
        "numbers are noisy: other work on the machine (the test suite, for one) moves them. "
        "Compare runs made on a quiet machine, and look at the client event-loop lag row: a "
        "client that lags reports its lag as latency.",
        "",
        "## Targets",
        "",
        "| target | measured | result |",
        "| --- | --- | --- |",
    ]
    for t in targets:
        mark = {True: "met", False: "**not met**", None: "n/a"}[t["met"]]
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"| {t['target']} | {t['value']}{note} | {mark} |")
    floor = [
        r
        for r in raw["results"]
        if r["setup"] == "baseline" and not r["latency_ms"]["p99"] <= plan["p99_bound_ms"]
    ]
    for r in floor:
        lines += [
            "",
            f"Caveat: at {_scenario_title(r['scenario']).lower()} the baseline itself (the fake "
            "upstream read by a plain httpx client, no relay) has a p99 of "
            f"{_f(r['latency_ms']['p99'])} ms: the load generators saturate this machine there, "
            "so that scenario's latency cannot show whether the relay alone meets the target.",
        ]
    lines += _notes(raw)
    lines += [
        "",
        f"![Added latency per delta, per scenario]({png_name})",
        "",
        "## Setups",
        "",
        "- **single**: one `daphne` process, SQLite, the app's in-process channel layer "
        f"({_layer(raw, 'single', 'chat.streaming.channel_layers.InProcessChannelLayer')}: "
        "what the settings pick when `REDIS_URL` is unset), the streaming consumer embedded in "
        "the web process; `CHAT_COALESCE_MS=30` (the default).",
        "- **single0**: the same with `CHAT_COALESCE_MS=0`: every upstream delta is sent as soon "
        "as the relay gets to it (measures the pipeline without the coalescing window).",
        "- **cluster**: two `daphne` and two `manage.py runworker chat-stream` processes, Redis "
        f"({_layer(raw, 'cluster', 'chat.streaming.channel_layers.RedisChannelLayer')}) "
        f"and PostgreSQL through the app's connection pool ({_pool(raw)} per process); clients "
        "alternate between the two web processes, each client's page, posts and socket on one "
        "(as nginx's `ip_hash` keeps them). The web processes generate the replies they are "
        "asked for (`CHAT_EMBEDDED_WORKER=true`, the default; the workers take what a full web "
        "process leaves); `--cluster-generation workers` has the workers generate every reply "
        "instead.",
        "- **browser**: the same as `single`, also serving `/static/` "
        "(`CHAT_SERVE_STATIC=true`) for the page's scripts; its client is chromium.",
        "- **baseline**: a bare `httpx` client on the server's transport (httpx-aiohttp) reads "
        "the fake upstream directly, splitting events on blank lines: the floor no relay can "
        "beat, in latency and in CPU per token (the client process's own CPU).",
        "",
        f"Replies are {plan['tokens']} tokens at {plan['rate']:g} tokens/s (one token, about 5 "
        f"characters, per SSE event), after {plan['upstream_ttft_ms']:g} ms of the upstream's "
        "own time to first token; the fast stream is one reply at "
        f"{plan['fast_rate']:g} tokens/s. Server environment: `CHAT_CHECKPOINT_SECONDS=2`, "
        "`CHAT_MAX_CONCURRENT_GENERATIONS=600`, `DJANGO_DEBUG=false`, and "
        "`CHAT_GENERATE_TITLES=false`: a conversation's title is one more upstream request "
        "after its first reply, not part of the relay measured here. The harness reads the "
        "settings with each setup's environment before starting it and stops if the channel "
        "layer, the window, the embedded worker or titles are not as described."
        + (
            f" The fake upstream got {raw['upstream_other_requests']} requests that were not "
            "benchmark streams (titles would be)."
            if raw.get("upstream_other_requests") is not None
            else ""
        ),
        "",
        "## Scenarios",
    ]
    scenario_names: list[str] = []
    for r in raw["results"]:
        if r["scenario"] not in scenario_names and not r["scenario"].startswith(
            ("ladder-", "req-", "alt")
        ):
            scenario_names.append(r["scenario"])
    for name in scenario_names:
        rows = [r for r in raw["results"] if r["scenario"] == name]
        rows.sort(key=lambda r: SETUP_ORDER.index(r["setup"]))
        lines += ["", f"### {_scenario_title(name)}", ""]
        if name == "idle":
            lines += _idle_table(rows)
            continue
        if name.startswith("browser-"):
            lines += _browser_table(rows)
            continue
        lines.append("| | " + " | ".join(r["setup"] for r in rows) + " |")
        lines.append("| --- |" + " --- |" * len(rows))
        for label, fn in STREAM_ROWS:
            cells = []
            for r in rows:
                try:
                    cells.append(fn(r))
                except (KeyError, TypeError, ZeroDivisionError):
                    cells.append("–")
            if all(c in ("–", "– / –", "– / –; –") for c in cells):
                continue
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        errors = Counter(f"{r['setup']}: {_one_line(e)}" for r in rows for e in r.get("errors", []))
        failed = {r["setup"]: r["streams"] - r["ok"] for r in rows if r["ok"] < r["streams"]}
        if failed:
            lines += [
                "",
                "Failed replies: "
                + ", ".join(f"{setup} {n}" for setup, n in failed.items())
                + ". First errors: "
                + "; ".join(f"{e} (x{n})" for e, n in errors.most_common(4)),
            ]
    pages = [r for r in raw["results"] if r["setup"] == "pages"]
    if pages:
        lines += ["", "### Server CPU per request and per turn", "", *_pages_table(pages)]
    ladder = [r for r in raw["results"] if r["scenario"].startswith("ladder-")]
    if ladder:
        lines += [
            "",
            "### Throughput ladder",
            "",
            f"Streams at {plan['rate']:g} tokens/s, {plan['ladder_tokens']} tokens each, more "
            "each step until the p99 (window excluded) passes "
            f"{plan['ladder_stop_ms']:g} ms or a reply fails. Capacity is the most tokens/s "
            f"delivered with p99 <= {plan['p99_bound_ms']:g} ms (and, second, "
            f"{plan['p99_relaxed_ms']:g} ms).",
            "",
            "| setup | streams | tokens/s delivered | p50 / p99 window excluded (ms) | "
            "p99 with window (ms) | added TTFT p99 (ms) | server CPU (% of one core) | "
            "client lag p99 (ms) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in ladder:
            lines.append(
                f"| {r['setup']} | {r['streams']} | {_f(r.get('tokens_per_s'), 0)} | "
                f"{_f(r['latency_ex_ms']['p50'])} / {_f(r['latency_ex_ms']['p99'])} | "
                f"{_f(r['latency_ms']['p99'])} | {_f(r.get('added_ttft_ms', {}).get('p99'))} | "
                f"{_f(r.get('cpu_percent'), 0)} | {_f(r['client_lag_ms']['p99'])} |"
            )
    lines += _soak()
    lines += ["", "## How it is measured", "", *METHOD, ""]
    return "\n".join(lines)


def _soak() -> list[str]:
    """bench/soak.md: the summary of the last `python -m bench.soak --write`."""
    if not SOAK.exists():
        return []
    return ["", "## Soak", "", SOAK.read_text().strip()]


def write_soak_section(path: Path) -> None:
    """Put bench/soak.md into a written report as its "Soak" section (in place of the one it
    has, else before "How it is measured")."""
    text = path.read_text()
    section = "\n".join(_soak()).strip() + "\n"
    start = text.find("\n## Soak\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[: start + 1] + section + text[end:]
    else:
        anchor = text.find("\n## How it is measured")
        text = text[:anchor].rstrip("\n") + "\n\n" + section + text[anchor:]
    path.write_text(text)


def _layer(raw: dict[str, Any], setup: str, default: str) -> str:
    found = raw.get("setups", {}).get(setup, {}).get("settings", {}).get("channel_layer")
    return f"`{found or default}`"


def _pool(raw: dict[str, Any]) -> str:
    pool = raw.get("setups", {}).get("cluster", {}).get("settings", {}).get("database_pool")
    if not pool:
        return "`DATABASE_POOL_SIZE`, 20 by default,"
    return f"{pool.get('min_size')} to {pool.get('max_size')} connections"


def _notes(raw: dict[str, Any]) -> list[str]:
    """bench/notes.md, written by hand after a run; its first line names that run's date."""
    if not NOTES.exists():
        return []
    text = NOTES.read_text().strip()
    first, _, body = text.partition("\n")
    written_for = first.removeprefix("<!-- run:").removesuffix("-->").strip()
    lines = ["", "## Notes", ""]
    if written_for != raw["date"]:
        lines += [
            f"*Written for the run of {written_for}, not this one: the numbers below may not "
            "match the tables.*",
            "",
        ]
    return [*lines, body.strip()]


def _one_line(error: str) -> str:
    if "Server Error (500)" in error:
        return error.split(":", 1)[0] + ": Server Error (500)"
    return " ".join(error.split())[:160].replace("|", "/")


SCENARIO_KINDS = (
    ("md-", "Markdown-heavy text: "),
    ("cpu-text-", "CPU pair, plain text: "),
    ("cpu-md-", "CPU pair, markdown-heavy text: "),
    ("browser-md-", "Chromium, markdown-heavy text: "),
)


def _scenario_title(name: str) -> str:
    if name == "idle":
        return "Idle WebSocket connections"
    for prefix, title in SCENARIO_KINDS:
        if name.startswith(prefix):
            return title + _scenario_title(name.removeprefix(prefix)).lower()
    head, _, tokens = name.partition("-")
    tokens, _, round_ = tokens.partition("-r")  # (a CPU pair's later rounds: `…-r2`)
    streams, _, rate = head.partition("x")
    title = f"{streams} stream{'s' if streams != '1' else ''} at {rate} tokens/s"
    title += f", {int(tokens):,}-token reply" if tokens else ""
    return title + (f", round {round_}" if round_ else "")


def _idle_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| | " + " | ".join(r["setup"] for r in rows) + " |",
        "| --- |" + " --- |" * len(rows),
    ]
    for label, key, digits in (
        ("connections open (failed)", None, 0),
        ("web process RSS before (MiB)", "rss_before_mib", 1),
        ("web process RSS with all open (MiB)", "rss_open_mib", 1),
        ("web process RSS after closing them (MiB)", "rss_after_close_mib", 1),
        ("resident memory per idle connection (KiB)", "rss_per_connection_kib", 1),
        ("server CPU while idle (% of one core)", "idle_cpu_percent", 1),
    ):
        if key is None:
            cells = [f"{r['alive']} ({r['failures']})" for r in rows]
        else:
            cells = [_f(r[key], digits) for r in rows]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _browser_table(rows: list[dict[str, Any]]) -> list[str]:
    if all(r.get("skipped") for r in rows):
        return ["Skipped: " + "; ".join(f"{r['setup']}: {r['skipped']}" for r in rows) + "."]
    lines = [
        "| | " + " | ".join(r["setup"] for r in rows) + " |",
        "| --- |" + " --- |" * len(rows),
    ]
    cells: list[tuple[str, Any]] = [
        ("reply finished and shown / stored as rendered", lambda r: "yes" if r["ok"] else "no"),
        ("longest long task while the reply streams (ms)", lambda r: _f(r["long_task_max_ms"])),
        (
            "long tasks while it streams / total blocking time beyond 50 ms each (ms)",
            lambda r: f"{r['long_task_count']} / {_f(r['blocking_ms'])}",
        ),
        (
            "longest long task while the page loaded, before the send (ms)",
            lambda r: _f(r["load_long_task_max_ms"]),
        ),
        (
            "Enter to the finished reply on the page / the upstream's streaming time (s)",
            lambda r: f"{_f(r['submit_to_finished_s'], 2)} / {_f(r['upstream_stream_s'], 2)}",
        ),
        (
            "reply text / rendered markup (bytes)",
            lambda r: f"{_f(r['text_bytes'])} / {_f(r['markup_bytes'])}",
        ),
        (
            "the page shows: code blocks / tables",
            lambda r: f"{r['shown'].get('code_blocks')} / {r['shown'].get('tables')}",
        ),
    ]
    for label, fn in cells:
        values = []
        for r in rows:
            if r.get("skipped"):
                values.append("skipped")
                continue
            try:
                values.append(fn(r))
            except (KeyError, TypeError):
                values.append("–")
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    errors = [f"{r['setup']}: {_one_line(e)}" for r in rows for e in r.get("errors", [])]
    if errors:
        lines += ["", "Errors: " + "; ".join(errors[:4])]
    return lines


METHOD = [
    "- **Server CPU per request and per turn** (`bench/turns.py`, setup `pages`: one daphne "
    "with `DJANGO_DEBUG=false`, SQLite, titles on): one user with 1,000 conversations, one of "
    "them 20 messages long (markdown-heavy answers with code, stored rendered). Each phase "
    "repeats one action back to back, one at a time, after three unmeasured warm-ups, and "
    "divides the server process's CPU time (psutil, user + system, all threads) over the "
    "phase by the count: the conversation page, the list page and the start page (plain "
    "GETs); a new conversation (`POST /c/`, its redirect, the page, the WebSocket it opens); "
    "and a turn in each of those (the htmx POST, a one-token reply streamed until its saved "
    "footer arrives, then the model's title until its frame arrives).",
    "- **Fake upstream** (`bench/upstream.py`, its own process): an OpenAI-compatible "
    "`/v1/chat/completions` that streams the reply named in the user's message at its token "
    "rate and records `time.time()` right after writing each chunk to the socket.",
    "- **Clients** (`bench/clients.py`, one asyncio process): each logs in with a session made "
    "through Django's ORM, opens the conversation's WebSocket, waits until all clients are "
    "connected, then posts its message with the CSRF token and `HX-Request: true`, and "
    "timestamps every WebSocket message. Token texts are known in advance, so the text length "
    "received tells which upstream chunks each frame completed.",
    "- **Added latency per delta** = arrival of the frame that completed the chunk minus the "
    "upstream's send time. **Window excluded** subtracts the wait the coalescing window "
    "imposes: an ideal, zero-cost coalescer would send frame k at max(send time of its newest "
    "chunk, frame k-1 + window), the first at once; the excluded latency is the arrival minus "
    "that. Anything the server adds beyond that (event-loop lag, a late timer) still counts. "
    "The `single0` run (`CHAT_COALESCE_MS=0`) measures the same without any window.",
    "- **Added time to first token** = submit to first text on the client, minus the "
    "upstream's own (request received to first chunk written).",
    "- **Bytes on the wire** = WebSocket payloads plus their frame headers (2-10 bytes; daphne "
    "does not negotiate compression), for every frame of the reply: the status line, the "
    "deltas and the final rendered message. Framing per delta frame = its wire bytes minus "
    "its text's UTF-8 bytes.",
    "- **Database writes** are counted by a trigger on `chat_message` (every INSERT and "
    "UPDATE of the reply row), whichever process wrote. The allowance is 3 + one per "
    "started checkpoint interval of the reply's duration.",
    "- **Server CPU and memory**: psutil on the server processes (daphne, workers; not Redis "
    "or PostgreSQL) from submit to the last reply. Memory per idle connection: the web "
    "processes' RSS with N idle sockets open minus before (after a warm-up), over N.",
    "- **Capacity** for the throughput comparison: the ladder's highest delivered tokens/s "
    "whose p99 (window excluded) stays within the bound.",
    "- **The cluster against one process** (CPU per token): after both setups' own runs, "
    "both are started again and the mid and big stream counts run on each in alternating "
    "rounds (`alt1-50x50` on one, then on the other; which goes first takes turns), minutes "
    "apart no more: the host's speed drifts by more than the target's margin between the "
    "setups' own runs. Within a pair the host's speed still moves (one process's CPU per "
    "token went from 106 to 157 µs in the same run on 2026-12-06, the fake upstream's from "
    "the same 5.9 to 9.4% of a core), so each pair's ratio is corrected by the fake "
    "upstream's CPU in each scenario: it serves the same streams to both setups, so its CPU "
    "measures the host's speed at the time. The target row takes the median of the "
    "corrected ratios, and shows each pair as measured and the setups' own runs beside it.",
    "- **What the client has of a reply** (`bench/page.py`): replies are rendered "
    "progressively, so a frame appends rendered blocks to `cN` once they settle (or a list's "
    "items to the list last in `cN`, or draws that list again), or escaped "
    'text to the open tail `tN` (or to the `<code id="xN">` of a code block still '
    "streaming), or draws the tail again. The client rebuilds the blocks and the tail from the "
    "frames; the app's own `ProgressiveRenderer`, fed the known text chunk by chunk, says which "
    "offset in the text each such state shows. Every frame must leave a state the renderer "
    "passes through, and the blocks at the end must equal `render_markdown(text)`. Framing per "
    "delta frame is measured on frames that only append text (wire bytes minus the text as "
    "sent); frames that settle blocks carry rendered HTML and are counted apart.",
    "- **Markdown-heavy text** (`bench/tokens.py`, `text=markdown`): sections with a heading, "
    "a paragraph with bold, emphasis, inline code and a link, a bullet and a numbered list, a "
    "table, a python and a js code block and another paragraph, split into word-sized tokens "
    "(a word or a run of punctuation with the white space before it, about 4.6 characters). "
    "**Bytes on the wire** for one such reply at the fast rate are compared with 2 x its "
    "text + its stored rendering (`Message.content_html`, read from the database after the "
    "run) + 64 B per WebSocket frame of the reply, and the 10,000-token reply with the "
    "1,000-token one.",
    "- **CPU pair**: the same number of streams, tokens/s and tokens, once with plain text and "
    "once with markdown-heavy text, one after the other on the same server process, in five "
    "rounds that alternate which goes first; server CPU (psutil, as above) per token of each, "
    "and the median of the rounds' ratios.",
    "- **Browser long tasks** (`bench/browser.py`): Debian's chromium, headless, driven by "
    "Playwright, logged in with a session cookie made like the clients', opens the "
    "conversation page of a daphne like `single` that also serves `/static/` "
    '(`CHAT_SERVE_STATIC=true`), installs `PerformanceObserver({type: "longtask", '
    "buffered: true})` before sending, types the message and presses Enter, and waits until "
    "the reply's tail is gone and it shows as complete (then 0.5 s for the last entries). "
    "Reported: the longest long task that started after Enter (0 if none), their count and "
    "total blocking time; long tasks of the page load are reported apart. Skipped, with the "
    "reason, without chromium or Playwright.",
]


# --- Profiles ---------------------------------------------------------------------------


# Where a sample's time goes: the first match from the innermost frame outwards decides.
PROFILE_AREAS: list[tuple[str, tuple[str, ...]]] = [
    (
        "reading the upstream (httpx, httpcore, h11, anyio, the SSE parser)",
        (
            "httpx/",
            "httpcore/",
            "h11/",
            "anyio/",
            "chat/streaming/sse.py",
            "chat/streaming/completion.py",
            "chat/streaming/client.py",
        ),
    ),
    ("Redis client (channels-redis, redis-py, msgpack)", ("channels_redis/", "redis/", "msgpack")),
    ("channel layer (in process)", ("channels/layers.py", "chat/streaming/channel_layers.py")),
    (
        "progressive rendering (chat.progressive, chat.markdown: markdown-it, Pygments, nh3)",
        ("chat/progressive.py", "chat/markdown.py", "markdown_it/", "pygments/"),
    ),
    (
        "consumers' handlers and fragments",
        ("chat/consumers.py", "chat/fragments.py", "django/template"),
    ),
    ("WebSocket and HTTP out (daphne, autobahn, twisted)", ("daphne/", "autobahn/", "twisted/")),
    (
        "generation and coalescer",
        (
            "chat/streaming/generation.py",
            "chat/streaming/coalescer.py",
            "chat/streaming/consumer.py",
            "chat/events.py",
            "chat/streaming/worker.py",
        ),
    ),
    ("Channels dispatch", ("channels/",)),
    ("database (Django ORM, sqlite3, psycopg)", ("django/db/", "sqlite3", "psycopg")),
    ("thread hops (asgiref, executor)", ("asgiref/", "concurrent/futures")),
]
IDLE_FRAMES = ("_worker (concurrent/futures/thread.py:81)", "Condition.wait (", "_wait_for_tstate")


def _area(frames: list[str], main: bool) -> str:
    if not main and frames and frames[-1].startswith(IDLE_FRAMES):
        return "waiting for work (thread pool)"
    if frames and frames[-1].startswith("EpollSelector.select ("):
        return "event loop waiting in select"
    for frame in reversed(frames):
        for name, keys in PROFILE_AREAS:
            if any(k in frame for k in keys):
                return name
    return "event loop, selectors, other"


def summarise_profile(path: Path, top: int = 40) -> None:
    """py-spy's raw (collapsed) stacks -> the functions with the most samples, self and total."""
    own: Counter[str] = Counter()
    own_function: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    areas: Counter[tuple[str, str]] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        thread = "MainThread (the event loop)"
        if frames[0].startswith("thread ("):  # py-spy --threads: "thread (id): name"
            if frames.pop(0).partition(": ")[2] != "MainThread":
                thread = "other threads"
            threads[thread] += n
        if not frames:
            continue
        areas[(thread, _area(frames, thread.startswith("Main")))] += n
        own[frames[-1]] += n
        own_function[_function(frames[-1])] += n
        for frame in set(frames):
            total[frame] += n
    samples = max(samples, 1)
    out = [f"{samples} samples", ""]
    if threads:
        out += ["by thread, and within each by area (the innermost frame that names one):"]
        for thread, n in threads.most_common():
            out += [f"{100 * n / samples:5.1f}%  {thread}"]
            out += [
                f"    {100 * m / samples:5.1f}%  {area}"
                for (t, area), m in areas.most_common()
                if t == thread
            ]
        out += [""]
    out += ["self, by function (all its lines):"]
    out += [f"{100 * n / samples:5.1f}%  {f}" for f, n in own_function.most_common(top)]
    out += ["", "self, by line:"]
    out += [f"{100 * n / samples:5.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["", "total (inclusive):"]
    out += [f"{100 * n / samples:5.1f}%  {f}" for f, n in total.most_common(top)]
    path.with_suffix(".top.txt").write_text("\n".join(out) + "\n")


def _function(frame: str) -> str:
    """`name (path/file.py:123)` -> `name (path/file.py)`."""
    head, sep, line = frame.rpartition(":")
    return f"{head})" if sep and line.rstrip(")").isdigit() else frame
