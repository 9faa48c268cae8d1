"""The report's figure: ok flows per second over time, and the latency CDF, one line per run.

Matplotlib is imported here only, and drawn through its Agg canvas (no display, no pyplot state),
so nothing else in `trustee` pays for it.

Layout is fixed, not fitted to the content, so a figure is always `SIZE_PX` and each panel sits
at the same place (`panel_box`). Runs take their colour from `PALETTE` in the order given
(Okabe-Ito's colour-blind safe set; past eight runs the colours repeat): the n-th file is
always the same colour in both panels. The legend sits above the panels, outside them, so the
only palette-coloured pixels inside a panel are the runs' own lines.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from trustee.bench.report_runs import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PALETTE = (
    "#0072b2",  # blue
    "#d55e00",  # vermillion
    "#009e73",  # bluish green
    "#cc79a7",  # reddish purple
    "#e69f00",  # orange
    "#56b4e9",  # sky blue
    "#f0e442",  # yellow
    "#882255",  # wine (instead of Okabe-Ito's black, which the axes already use)
)
DPI = 100
SIZE_PX = (1200, 520)
# Each panel's rectangle in figure fractions: left, bottom, width, height.
PANELS = {"throughput": (0.06, 0.11, 0.41, 0.66), "cdf": (0.56, 0.11, 0.41, 0.66)}
LINE_WIDTH = 2.0


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def panel_box(name: str) -> tuple[int, int, int, int]:
    """The pixel box (left, top, right, bottom; y down, as in an image) of a panel's axes."""
    left, bottom, width, height = PANELS[name]
    w, h = SIZE_PX
    return (
        round(left * w),
        round((1 - bottom - height) * h),
        round((left + width) * w),
        round((1 - bottom) * h),
    )


def _note_skipped(axes: Axes, skipped: list[str], what: str) -> None:
    if not skipped:
        return
    text = f"no {what}: " + ", ".join(skipped)
    axes.text(0.01, 0.01, text, transform=axes.transAxes, fontsize=8, va="bottom", wrap=True)


def _throughput(axes: Axes, runs: list[Run]) -> None:
    skipped = []
    for i, run in enumerate(runs):
        if not run.timeline:
            skipped.append(f"{run.label} ({run.kind} run)")
            continue
        points = sorted(run.timeline)
        points.append((points[-1][0] + 1, points[-1][1]))  # each entry covers [t, t + 1)
        t, ok = zip(*points, strict=True)
        axes.plot(t, ok, color=colour(i), linewidth=LINE_WIDTH, drawstyle="steps-post")
    axes.set_title("ok flows per second")
    axes.set_xlabel("seconds since the measured window began")
    axes.set_ylabel("flows/s")
    axes.set_ylim(bottom=0)
    axes.grid(True, color="#dddddd")
    _note_skipped(axes, skipped, "timeline")


def _cdf(axes: Axes, runs: list[Run]) -> None:
    skipped = []
    drawn = False
    for i, run in enumerate(runs):
        points = sorted(p for p in run.cdf if p[0] > 0)  # a log axis has no place for 0 ms
        if not points:
            skipped.append(f"{run.label} ({run.kind} run)")
            continue
        ms, fraction = zip(*points, strict=True)
        axes.plot(ms, fraction, color=colour(i), linewidth=LINE_WIDTH)
        drawn = True
    if drawn:
        axes.set_xscale("log")
    axes.set_title("latency CDF of ok flows")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("fraction of flows at or below")
    axes.set_ylim(0, 1.02)
    axes.grid(True, which="both", color="#dddddd")
    _note_skipped(axes, skipped, "latency CDF")


def render_png(runs: list[Run], title: str) -> bytes:
    """The figure as PNG bytes, exactly `SIZE_PX` pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI)
    FigureCanvasAgg(figure)  # Agg explicitly: whatever backend the environment names
    figure.suptitle(title, y=0.985, fontsize=13)
    _throughput(figure.add_axes(PANELS["throughput"]), runs)
    _cdf(figure.add_axes(PANELS["cdf"]), runs)
    handles = [
        Line2D([], [], color=colour(i), linewidth=LINE_WIDTH, label=run.label)
        for i, run in enumerate(runs)
    ]
    figure.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.93),
        ncol=min(len(runs), 6),
        frameon=False,
    )
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()
