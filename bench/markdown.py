"""Render benchmark JSON files (from bench/speed.py) as the README's markdown table; ``table`` for the other scripts.

    python bench/markdown.py bench/results/h100_wan14b.json bench/results/h100_hv15_wan5b.json
"""
from __future__ import annotations

import json
import sys


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table of ``rows`` under ``headers``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def rows_to_markdown(reports: list[dict]) -> str:
    lines = ["| model | res | setting | sparse blocks | G | dense ms | FIS ms | speed-up | ideal | overhead | peak GiB dense / FIS |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for report in reports:
        for r in report["rows"]:
            ideal = "-" if r["ideal_speedup"] is None else f"{r['ideal_speedup']:.2f}x"
            overhead = "-" if r["overhead"] is None else f"{r['overhead']:+.1%}"
            name = r["model_name"] + (", compiled" if r.get("compiled") else "")
            lines.append(f"| {name} | {r['resolution']} | {r['setting']} | {r['sparse_blocks']} of {r.get('blocks', '?')} "
                         f"| {r['groups']} | {r['dense_ms']:.0f} | {r['fis_ms']:.0f} | **{r['speedup']:.2f}x** | {ideal} | {overhead} "
                         f"| {r['dense_peak_gib']:.2f} / {r['fis_peak_gib']:.2f} |")
    first = reports[0]
    lines.append(f"\n{first['device']}, torch {first['torch']}, ComfyUI {first['comfyui']}, {first['dtype']}, {first['date']}.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(rows_to_markdown([json.loads(open(path).read()) for path in sys.argv[1:]]))
