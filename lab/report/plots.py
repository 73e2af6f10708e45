"""The report's plots, as PNG files (matplotlib, Agg backend: no display needed).

Contract: each function writes one PNG at ``path`` and returns it, or returns
None when there is nothing to draw. Times on the x axis are seconds from the
source's start; fault windows are shaded, labelled with their id and kind.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from lab.report.source import Fault  # noqa: E402

FAULT_COLOURS = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]


def _shade(ax: Any, faults: list[Fault], t0: float, label: bool) -> None:
    for i, f in enumerate(faults):
        c = FAULT_COLOURS[i % len(FAULT_COLOURS)]
        ax.axvspan(f.start - t0, f.end - t0, color=c, alpha=0.15, lw=0)
        if label:
            who = ",".join(f.targets[:3]) + ("…" if len(f.targets) > 3 else "")
            ax.text(f.start - t0, 1.02, f" {f.id}: {f.kind} {who}", transform=ax.get_xaxis_transform(),
                    fontsize=8, color=c, va="bottom", ha="left", clip_on=False)


def _step(ax: Any, series: list[tuple[float, float]], t0: float, t1: float, **kw: Any) -> None:
    xs = [0.0] + [t - t0 for t, _v in series] + [t1 - t0]
    ys = [0] + [v for _t, v in series] + [series[-1][1] if series else 0]
    ax.step(xs, ys, where="post", **kw)


def timeline(path: Path, title: str, t0: float, t1: float, faults: list[Fault],
             ready: list[tuple[float, int]], pods: list[tuple[float, int]],
             avail: list[tuple[float, float]]) -> Path:
    rows = 3 if avail else 2
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.2 * rows + 0.8), sharex=True)
    _step(axes[0], ready, t0, t1, color="#2ca02c", lw=2)
    axes[0].set_ylabel("Ready nodes")
    axes[0].set_ylim(bottom=0, top=max([v for _t, v in ready] + [1]) * 1.2)
    _step(axes[1], pods, t0, t1, color="#1f77b4", lw=2)
    axes[1].set_ylabel("Running pods")
    axes[1].set_ylim(bottom=0, top=max([v for _t, v in pods] + [1]) * 1.2)
    if avail:
        axes[2].plot([t - t0 for t, _v in avail], [v * 100 for _t, v in avail], color="#9467bd", lw=1.5,
                     marker=".", ms=3)
        axes[2].set_ylabel("Service\navailability %")
        axes[2].set_ylim(-5, 105)
    for i, ax in enumerate(axes):
        _shade(ax, faults, t0, label=i == 0)
        ax.grid(alpha=0.3)
        ax.yaxis.get_major_locator().set_params(integer=True)
    axes[-1].set_xlabel("seconds since the start")
    axes[-1].set_xlim(0, max(t1 - t0, 1.0))
    fig.suptitle(title + ("   (shaded: fault windows)" if faults else ""), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cdf(path: Path, title: str, samples: dict[str, list[float]],
        buckets: dict[str, list[tuple[float, float]]] | None = None, xlabel: str = "seconds",
        slo: float | None = None) -> Path | None:
    """Empirical CDFs of samples, and step CDFs of cumulative histogram buckets."""
    buckets = {k: v for k, v in (buckets or {}).items() if v and v[-1][1] > 0}
    samples = {k: v for k, v in samples.items() if v}
    if not samples and not buckets:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, vals in samples.items():
        s = sorted(vals)
        n = len(s)
        ax.step([s[0]] + s, [0.0] + [(i + 1) / n for i in range(n)], where="post", lw=2, label=f"{name} (n={n})")
    for name, b in buckets.items():
        finite = [(le, c) for le, c in b if le != float("inf") and le > 0]
        total = b[-1][1]
        # a histogram knows the fraction at each bucket bound only: points joined by lines, as
        # histogram_quantile interpolates
        ax.plot([le for le, _c in finite], [c / total for _le, c in finite], lw=1.5, marker="o", ms=4,
                label=f"{name} (n={int(total)}, histogram buckets)")
    if slo is not None:
        ax.axvline(slo, color="#d62728", lw=1, ls="--", label=f"SLO {slo:g} s")
    for q in (0.5, 0.9, 0.99):
        ax.axhline(q, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    ax.set_xlabel(xlabel + " (log scale)")
    ax.set_ylabel("fraction ≤ x")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def resources(path: Path, title: str, t0: float, t1: float, faults: list[Fault],
              cpu: dict[str, list[tuple[float, float]]], rss: dict[str, list[tuple[float, float]]]) -> Path | None:
    if not any(cpu.values()) and not any(rss.values()):
        return None
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    cmap = plt.get_cmap("tab10" if len(set(cpu) | set(rss)) <= 10 else "tab20")
    for i, p in enumerate(sorted(set(cpu) | set(rss))):
        c = cmap(i % cmap.N)
        if cpu.get(p):
            a1.plot([t - t0 for t, _v in cpu[p]], [v for _t, v in cpu[p]], color=c, lw=1.3, label=p)
        if rss.get(p):
            a2.plot([t - t0 for t, _v in rss[p]], [v / 2**20 for _t, v in rss[p]], color=c, lw=1.3, label=p)
    a1.set_ylabel("CPU (cores)")
    a2.set_ylabel("RSS (MiB)")
    a2.set_xlabel("seconds since the start")
    a2.set_xlim(0, max(t1 - t0, 1.0))
    for i, ax in enumerate((a1, a2)):
        _shade(ax, faults, t0, label=i == 0)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    ax = a1 if any(cpu.values()) else a2   # the legend goes where there are lines
    ax.legend(fontsize=7, ncol=4 if len(set(cpu) | set(rss)) > 8 else 2, loc="upper left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
