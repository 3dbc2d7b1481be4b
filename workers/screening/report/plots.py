"""Band-structure + DOS figures of one screened structure, rendered to PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from workers.screening.types import BandData

_BAND_COLOR = "#1f4e9c"
_IMAGINARY_SHADE = "#f4c7c3"


def _tick_label(label: str) -> str:
    # seekpath spells Γ "GAMMA"; phonopy ≥ 4 already returns mathtext like "$\Gamma$".
    return "Γ" if label.upper() in {"GAMMA", "G"} else label


def get_special_points(bands: BandData) -> tuple[list[float], list[str]]:
    """Tick positions (1/Å) and labels at segment ends, phonopy's `labels` convention.

    `labels` holds one label per end point of each connected run of segments, i.e.
    `(2 - path_connections).sum()` of them; where the path jumps, the end of one run and the start
    of the next share a position and are shown as "X|K". Without matching labels the ticks are
    unlabelled.
    """
    positions: list[float] = []
    texts: list[str] = []
    if not bands.distances:
        return positions, texts
    n_expected = sum(2 - int(bool(c)) for c in bands.path_connections)
    labels = list(bands.labels) if len(bands.labels) == n_expected else None
    cursor = 0  # next unused label
    start_of_run = True
    for i, seg in enumerate(bands.distances):
        if start_of_run:
            text = _tick_label(labels[cursor]) if labels else ""
            cursor += 1
            if positions and abs(positions[-1] - seg[0]) < 1e-9:
                texts[-1] = f"{texts[-1]}|{text}" if texts[-1] or text else ""
            else:
                positions.append(float(seg[0]))
                texts.append(text)
        connected = bool(bands.path_connections[i]) if i < len(bands.path_connections) else False
        positions.append(float(seg[-1]))
        texts.append(_tick_label(labels[cursor]) if labels else "")
        cursor += 1
        start_of_run = not connected
    return positions, texts


def _frequency_limits(bands: BandData) -> tuple[float, float]:
    values = [f for seg in bands.frequencies for q in seg for f in q]
    f_min, f_max = (min(values), max(values)) if values else (0.0, 1.0)
    span = max(f_max - min(f_min, 0.0), 1e-3)
    # Below zero always gets some room, so that the shaded "imaginary" band is visible even for
    # a stable structure and a soft mode is never clipped by the frame.
    lower = min(f_min, 0.0) - 0.05 * span
    return lower, f_max + 0.05 * span


def draw_band_structure(bands: BandData, *, title: str = "") -> Figure:
    """Matplotlib figure: bands (THz vs path distance in 1/Å) left, DOS right, shared y axis.

    Imaginary frequencies are drawn as negative values over a shaded region below 0 THz.
    The figure is not attached to pyplot, so nothing leaks between calls.
    """
    fig = Figure(figsize=(8.0, 4.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    has_dos = bool(bands.dos_frequencies_thz) and bool(bands.dos_states_per_thz)
    if has_dos:
        ax_band, ax_dos = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3.2, 1]})
    else:
        ax_band, ax_dos = fig.subplots(1, 1), None

    lower, upper = _frequency_limits(bands)
    for dist, freqs in zip(bands.distances, bands.frequencies, strict=False):
        if not freqs:
            continue
        by_band = list(zip(*freqs, strict=True))  # per q per band -> per band per q
        for branch in by_band:
            ax_band.plot(dist, branch, color=_BAND_COLOR, linewidth=0.9)

    positions, texts = get_special_points(bands)
    x_max = positions[-1] if positions else 1.0
    for x in positions[1:-1]:
        ax_band.axvline(x, color="0.55", linewidth=0.6)
    ax_band.set_xticks(positions, texts)
    ax_band.set_xlim(positions[0] if positions else 0.0, x_max)
    ax_band.set_ylim(lower, upper)
    ax_band.set_xlabel("Wave vector (1/Å)")
    ax_band.set_ylabel("Frequency (THz)")

    axes: Sequence[Any] = (ax_band, ax_dos) if ax_dos is not None else (ax_band,)
    for ax in axes:
        ax.axhspan(lower, 0.0, color=_IMAGINARY_SHADE, alpha=0.6, linewidth=0, zorder=0)
        ax.axhline(0.0, color="0.2", linewidth=0.7, linestyle="--")
        ax.tick_params(direction="in")
    if ax_dos is not None:
        ax_dos.plot(bands.dos_states_per_thz, bands.dos_frequencies_thz, color=_BAND_COLOR, lw=0.9)
        ax_dos.fill_betweenx(bands.dos_frequencies_thz, 0.0, bands.dos_states_per_thz, color=_BAND_COLOR, alpha=0.2)
        ax_dos.set_xlim(left=0.0)
        ax_dos.set_xlabel("DOS (states/THz)")
        ax_dos.tick_params(labelleft=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_band_structure(bands: BandData, *, title: str = "") -> bytes:
    """PNG bytes of `draw_band_structure(bands, title=title)`."""
    fig = draw_band_structure(bands, title=title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
