"""Draw bench/results.png from bench/results.json (make bench).

Usage: python chart.py results.json results.png

A horizontal bar per system: events/s, labelled with the ratio to the raw
read; failed rows are drawn empty and marked FAILED.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    with open(src) as f:
        data = json.load(f)
    rows = data["rows"]
    names = [r["name"] for r in rows]
    rates = [r["events_per_s"] if r["correct"] else 0 for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.5))
    colors = ["#888888" if r["name"].startswith("raw") else "#2a7ab9" if r["name"].startswith("eddy") else "#d98b2b" for r in rows]
    bars = ax.barh(names, rates, color=colors)
    ax.invert_yaxis()
    for bar, r in zip(bars, rows):
        if r["correct"]:
            label = f'{r["events_per_s"]:,.0f}/s'
            if r.get("ratio_to_raw_read"):
                label += f'  ({r["ratio_to_raw_read"]:.2f}x raw)'
        else:
            label = "FAILED"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + label, va="center", fontsize=9)
    ax.set_xscale("log")  # the raw limit and the word counts differ 50-fold
    ax.set_xlabel("input lines per second, log scale (ready to complete, correct output)")
    ax.set_title(f'Eddy and peers, {data["meta"]["date"]}', fontsize=10)
    ax.set_xlim(min([r for r in rates if r > 0] + [1]) / 2, max(rates + [1]) * 6)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
