"""The cell-state and gate heatmap of ``lstmtext inspect --plot``: one panel per direction, four rows per unit
(cell state c, input gate i, forget gate f, output gate o), one column per piece of the text."""

from __future__ import annotations

ROWS = (("cell", "c"), ("i", "i"), ("f", "f"), ("o", "o"))
MAX_PIECES = 200  # wider than this and the piece labels stop being readable


def plot_cells(tr, units: list[tuple[str, int]], path: str, title: str = "") -> None:
    """Write a PNG of the chosen (direction, unit) pairs of a Trace (lstmtext.inspect.trace)."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    from lstmtext.errors import UsageError
    from lstmtext.inspect import labels

    T = min(len(tr.pieces), MAX_PIECES)
    by_direction: dict[str, list[int]] = {}
    for direction, unit in units:
        by_direction.setdefault(direction, []).append(unit)
    if not by_direction:
        raise UsageError("--plot: no units to show")
    cell_max = max(float(tr.states[d]["cell"][:T, us].abs().max()) for d, us in by_direction.items()) or 1.0
    n_rows = [len(us) * len(ROWS) for us in by_direction.values()]
    width = min(30.0, max(7.0, 0.32 * T + 2.5))
    fig, axes = plt.subplots(
        len(by_direction),
        1,
        figsize=(width, 1.2 + sum(0.22 * n + 0.9 for n in n_rows)),
        gridspec_kw={"height_ratios": n_rows},
        squeeze=False,
        layout="constrained",
    )
    for ax, (direction, us) in zip(axes[:, 0], by_direction.items()):
        series = tr.states[direction]
        grid = np.array([series[key][:T, u].numpy() for u in us for key, _ in ROWS])  # (rows, T)
        is_cell = np.array([key == "cell" for _ in us for key, _ in ROWS])[:, None].repeat(T, 1)
        gates = ax.imshow(
            np.ma.masked_where(is_cell, grid), cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest"
        )
        cells = ax.imshow(
            np.ma.masked_where(~is_cell, grid),
            cmap="RdBu_r",
            vmin=-cell_max,
            vmax=cell_max,
            aspect="auto",
            interpolation="nearest",
        )
        ax.set_yticks(range(len(grid)))
        ax.set_yticklabels([f"unit {u}  {label}" if key == "cell" else label for u in us for key, label in ROWS])
        for k in range(1, len(us)):  # a white rule between units
            ax.axhline(k * len(ROWS) - 0.5, color="white", linewidth=2.5)
        ax.set_xticks(range(T))
        ax.set_xticklabels(labels(tr.pieces, tr.spans, tr.text)[:T], rotation=90, fontsize=9)
        reads = "reads left to right" if direction == "forward" else "reads right to left"
        ax.set_title(f"{direction} stack ({reads})", fontsize=10, loc="left")
    # one scale each for the whole figure, so units and directions compare at a glance
    fig.colorbar(cells, ax=axes[:, 0].tolist(), fraction=0.02, pad=0.01, label="cell state c")
    fig.colorbar(gates, ax=axes[:, 0].tolist(), fraction=0.02, pad=0.01, label="gates i, f, o (0 closed, 1 open)")
    shown = "" if len(tr.pieces) == T else f" (first {T} of {len(tr.pieces)} pieces)"
    fig.suptitle(f"{title}{shown}\ncell state and input/forget/output gates per piece", fontsize=11)
    fig.savefig(path, dpi=80)
    plt.close(fig)
