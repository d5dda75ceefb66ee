#!/usr/bin/env python3
"""Draws chat-load's JSON lines as a small SVG: deliveries/s against room size (closed loop,
label "max"), latency percentiles at half the maximum rate (label "half"), per transport, and
p99 against offered load at a fixed room size for the floor server and both transports (label
"sweep"; a hollow marker is a run chat-load itself bounded). Standard library only, so it runs
anywhere Python does.

    python3 scripts/plot.py perf/results.jsonl docs/fanout.svg
"""
import json
import math
import sys

W, H, PAD = 360, 240, 48
COLOURS = {"ws": "#1f77b4", "tcp": "#d62728"}
DASH = {"p50_ms": "", "p90_ms": "6,3", "p99_ms": "2,2"}


def log_x(value, lo, hi, left, width):
    return left + width * (math.log10(value) - math.log10(lo)) / max(1e-9, math.log10(hi) - math.log10(lo))


def panel(runs, key_y, title, y_label, left, series, x_label="receivers in the room", hollow=None):
    """One chart: series is a list of (name, colour, dash, [(x, y)]). With `hollow` (a set of
    (name, x)), every point gets a marker: open for those in it, filled for the others."""
    out = [f'<text x="{left + W / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>']
    xs = sorted({x for _, _, _, pts in series for x, _ in pts}) or [1, 10]
    ys = [y for _, _, _, pts in series for _, y in pts] or [1]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) * 10
    y_hi = max(ys) * 1.1 or 1
    top, height, width = 30, H - 30 - PAD, W - PAD - 10
    x0 = left + PAD
    out.append(f'<line x1="{x0}" y1="{top + height}" x2="{x0 + width}" y2="{top + height}" stroke="#333"/>')
    out.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{top + height}" stroke="#333"/>')
    for x in xs:
        px = log_x(x, x_lo, x_hi, x0, width)
        text = f"{x / 1e6:g}M" if x >= 1e6 else (f"{x / 1e3:g}k" if x >= 1e4 else f"{x}")
        out.append(f'<text x="{px}" y="{top + height + 14}" text-anchor="middle" font-size="10">{text}</text>')
    for i in range(5):
        y = y_hi * i / 4
        py = top + height - height * i / 4
        label = f"{y / 1e6:.1f}M" if y_hi >= 1e6 else (f"{y / 1e3:.0f}k" if y_hi >= 1e4 else f"{y:.0f}")
        out.append(f'<text x="{x0 - 4}" y="{py + 3}" text-anchor="end" font-size="10">{label}</text>')
    out.append(f'<text x="{x0 + width / 2}" y="{H - 8}" text-anchor="middle" font-size="11">{x_label}</text>')
    out.append(f'<text x="{left + 10}" y="{top + height / 2}" font-size="11" transform="rotate(-90 {left + 10} {top + height / 2})" text-anchor="middle">{y_label}</text>')
    legend_y = top + 4
    for name, colour, dash, pts in series:
        pts = sorted(pts)
        path = " ".join(f"{log_x(x, x_lo, x_hi, x0, width):.1f},{top + height - height * y / y_hi:.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')
        if hollow is not None:
            for x, y in pts:
                px, py = log_x(x, x_lo, x_hi, x0, width), top + height - height * y / y_hi
                fill = "white" if (name, x) in hollow else colour
                out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{fill}" stroke="{colour}"/>')
        out.append(f'<text x="{x0 + 8}" y="{legend_y + 8}" font-size="10" fill="{colour}">{name}</text>')
        legend_y += 12
    return out


def sweep_series(runs):
    """p99 against offered load for the floor and the chat server's transports, and the points
    chat-load bounded."""
    series, hollow = [], set()
    kinds = [("floor", "tcp", "floor (lines)", "#333333"), ("chat", "tcp", "line transport", COLOURS["tcp"]),
             ("chat", "ws", "WebSocket", COLOURS["ws"])]
    for server, transport, name, colour in kinds:
        at = [r for r in runs if r["label"] == "sweep" and r.get("server", "chat") == server
              and r["transport"] == transport]
        by_load = {}
        for r in at:
            by_load.setdefault(r["rate"] * r["receivers"], []).append(r)
        pts = []
        for load, rs in by_load.items():
            pts.append((load, sorted(r["p99_ms"] for r in rs)[len(rs) // 2]))
            if any(r.get("load_tool_bound") for r in rs):
                hollow.add((name, load))
        if pts:
            series.append((name, colour, "", pts))
    return series, hollow


def main():
    source, target = sys.argv[1], sys.argv[2]
    everything = [json.loads(line) for line in open(source) if line.strip().startswith("{")]
    sweep, hollow = sweep_series(everything)
    runs = [r for r in everything if r.get("server", "chat") == "chat"]
    throughput, latency = [], []
    for transport, colour in COLOURS.items():
        pts = [(r["receivers"], r["deliveries_per_s"]) for r in runs if r["transport"] == transport and r["label"] == "max"]
        if pts:
            throughput.append((f"{transport} deliveries/s", colour, "", pts))
        for key, dash in DASH.items():
            pts = [(r["receivers"], r[key]) for r in runs if r["transport"] == transport and r["label"] == "half"]
            if pts:
                latency.append((f"{transport} {key[:-3]}", colour, dash, pts))
    body = panel(runs, "deliveries_per_s", "Fan-out, closed loop", "deliveries/s", 0, throughput)
    body += panel(runs, "p99_ms", "Latency at half the maximum", "ms", W, latency)
    panels = 2
    if sweep:
        body += panel(everything, "p99_ms", "p99 against offered load", "p99 ms", 2 * W, sweep,
                      x_label="offered deliveries/s (hollow: chat-load bound)", hollow=hollow)
        panels = 3
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{panels * W}" height="{H}" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>'] + body + ["</svg>"]
    with open(target, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
