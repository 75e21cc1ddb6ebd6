#!/usr/bin/env python3
"""Renders a Grafana dashboard of this repository to PNG from a running Prometheus.

Grafana is not packaged for Debian, so this plots the dashboard's own panel queries (the
`targets[].expr` of dashboards/*.json, variables set to "All") with matplotlib, laid out by
each panel's gridPos: time series as lines with their threshold lines, stat panels as their
latest values. It is what an SRE would see in Grafana, without Grafana's styling.

    /usr/bin/python3 scripts/render-dashboards.py --prometheus http://127.0.0.1:9090 \
        --dashboard dashboards/overview.json --start -15m --out overview.png

Needs matplotlib (Debian: python3-matplotlib, which scripts/setup.sh installs for
/usr/bin/python3). tests/tests/monitoring.rs runs it against the Prometheus it starts.
"""

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

# Grafana unit ids used by the dashboards, as axis labels.
UNITS = {
    "s": "seconds",
    "ops": "per second",
    "bytes": "bytes",
    "percentunit": "fraction",
    "none": "",
}


def parse_time(text, now):
    """Unix seconds from an absolute number or a relative '-15m' / '-1h' / '-30s'."""
    if text.startswith("-"):
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        return now - float(text[1:-1]) * units[text[-1]]
    return float(text)


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step}
    )
    url = f"{prometheus}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        # Prometheus explains a bad query in the body; say which query it was.
        raise SystemExit(f"query failed ({e.code}): {expr}\n{e.read().decode(errors='replace')}")
    if body.get("status") != "success":
        raise SystemExit(f"query failed: {expr}: {body}")
    return body["data"]["result"]


def legend(fmt, metric):
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    return out or json.dumps(metric)


def instantiate(expr, variables, rate_interval):
    expr = expr.replace("$__rate_interval", rate_interval)
    for name, value in variables.items():
        expr = expr.replace("$" + name, value)
    return expr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--dashboard", required=True, help="a dashboards/*.json file")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--start", default="-15m", help="unix time or -15m (default)")
    ap.add_argument("--end", default="now", help="unix time or now (default)")
    ap.add_argument("--rate-interval", default="30s", help="what $__rate_interval becomes")
    ap.add_argument(
        "--var", action="append", default=[], help="NAME=REGEX for a dashboard variable (default .*)"
    )
    args = ap.parse_args()

    with open(args.dashboard) as f:
        dash = json.load(f)
    now = time.time()
    end = now if args.end == "now" else float(args.end)
    start = parse_time(args.start, now)
    if end - start < 60:
        start = end - 60
    step = max(1.0, round((end - start) / 400.0))
    variables = {v["name"]: ".*" for v in dash["templating"]["list"] if v["type"] == "query"}
    for v in args.var:
        name, _, value = v.partition("=")
        variables[name] = value

    panels = sorted(dash["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    # Rows of panels as Grafana lays them out (same y), each row 24 columns wide.
    row_ys = sorted({p["gridPos"]["y"] for p in panels})
    heights = [max(p["gridPos"]["h"] for p in panels if p["gridPos"]["y"] == y) for y in row_ys]
    fig = plt.figure(figsize=(20, sum(heights) * 0.45 + 1), dpi=80, layout="constrained")
    rows = fig.add_gridspec(len(row_ys), 1, height_ratios=heights)
    grids = {y: rows[i].subgridspec(1, 24) for i, y in enumerate(row_ys)}
    fig.suptitle(
        f"{dash['title']}  —  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(start))} to "
        f"{time.strftime('%H:%M:%S', time.localtime(end))}  (rendered from Prometheus with matplotlib)",
        fontsize=13,
    )
    for p in panels:
        g = p["gridPos"]
        ax = fig.add_subplot(grids[g["y"]][0, g["x"] : g["x"] + g["w"]])
        ax.set_title(p["title"], fontsize=10, loc="left")
        unit = p["fieldConfig"]["defaults"].get("unit", "none")
        series = []
        for t in p["targets"]:
            expr = instantiate(t["expr"], variables, args.rate_interval)
            for s in query_range(args.prometheus, expr, start, end, step):
                xs = [float(v[0]) - end for v in s["values"]]
                ys = [float(v[1]) for v in s["values"]]
                series.append((legend(t.get("legendFormat", ""), s["metric"]), xs, ys))
        if not series:
            ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        if p["type"] == "stat":
            ax.axis("off")
            mappings = {}
            for m in p["fieldConfig"]["defaults"].get("mappings", []):
                for k, v in m.get("options", {}).items():
                    mappings[float(k)] = v["text"]
            lines = []
            # A stat shows the value now: series that ended before the end (a node that was
            # killed) are not part of it.
            for name, xs, ys in series:
                if not xs or xs[-1] < -2 * step:
                    continue
                last = next((y for y in reversed(ys) if not math.isnan(y)), float("nan"))
                shown = mappings.get(last, f"{last:g}")
                lines.append(f"{name}: {shown}")
            ax.text(0.02, 0.9, "\n".join(lines[:6]), va="top", fontsize=12, transform=ax.transAxes)
            continue
        for name, xs, ys in series:
            ax.plot(xs, ys, label=name, linewidth=1.2)
        top = max((y for _, _, ys in series for y in ys if not math.isnan(y)), default=0.0)
        for step_ in p["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]:
            v = step_.get("value")
            # Only thresholds near the data: a far one would flatten every line.
            if v is not None and 0 < v <= 2 * top:
                ax.axhline(v, linestyle="--", linewidth=0.8, color=step_["color"])
        ax.set_xlabel("seconds before the end", fontsize=8)
        ax.set_ylabel(UNITS.get(unit, unit), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
