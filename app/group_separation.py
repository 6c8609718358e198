"""Paper Fig. 4 for one group: its classes (and the next group's) over the cell grid, and how
far apart the classes of a group are against the paper's guarantees (N-1 cells, L-1 heading
classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.map_layers import WEDGE_ARC_POINTS, WEDGE_RADIUS, PartitionView

FIG4_COLOURS = ([255, 140, 0], [128, 0, 160])  # the paper's orange and purple groups

# --- paper Fig. 4: one group's classes and their separation ---------------------------------


@dataclass
class GroupSeparation:
    classes: int
    cells: int
    min_gap_m: float | None  # smallest distance between the squares of two of its cells
    min_centre_m: float | None  # the same pair's centre-to-centre distance
    bound_m: float  # M (N - 1): paper property 2
    min_heading_deg: float | None  # smallest heading gap between two classes of one cell
    heading_bound_deg: float  # alpha (L - 1)


def group_separation(view: PartitionView, group: int) -> GroupSeparation:
    """How far apart the classes of one group are, against the paper's guarantees."""
    params = view.params
    classes = view.classes[view.classes["group"] == group]
    cells = classes[["cell_e", "cell_n"]].drop_duplicates().to_numpy(np.int64)
    min_gap = min_centre = None
    if len(cells) > 1:
        from scipy.spatial import cKDTree

        # Nearest other cell in index units; the gap between two squares that are d_e, d_n
        # cells apart is M * hypot(max(|d_e| - 1, 0), max(|d_n| - 1, 0)).
        tree = cKDTree(cells)
        _, nearest = tree.query(cells, k=2)
        delta = np.abs(cells - cells[nearest[:, 1]])
        gaps = params.M * np.hypot(*np.maximum(delta - 1, 0).T)
        centres = params.M * np.hypot(*delta.T)
        best = int(np.argmin(gaps))
        min_gap, min_centre = float(gaps[best]), float(centres[best])
    min_heading = None
    per_cell = classes.groupby(["cell_e", "cell_n"])["heading_class"]
    if (per_cell.size() > 1).any():
        sorted_h = classes.sort_values(["cell_e", "cell_n", "heading_class"])
        same_cell = (sorted_h["cell_e"].diff() == 0) & (sorted_h["cell_n"].diff() == 0)
        steps = sorted_h["heading_class"].diff()[same_cell]
        # Gap between the nearer edges of two heading bins, like the spatial gap above.
        min_heading = float((steps.min() - 1) * params.alpha)
    return GroupSeparation(
        classes=len(classes),
        cells=len(cells),
        min_gap_m=min_gap,
        min_centre_m=min_centre,
        bound_m=params.M * (params.N - 1),
        min_heading_deg=min_heading,
        heading_bound_deg=params.alpha * (params.L - 1),
    )


def fig4_figure(view: PartitionView, group: int, window_cells: int | None = None):
    """Plotly sketch of paper Fig. 4: the group's wedges (orange) and the next group's
    (purple) over the cell grid, in a window around the group's busiest cell."""
    import plotly.graph_objects as go

    params = view.params
    window = window_cells or 3 * params.N
    mine = view.classes[view.classes["group"] == group]
    figure = go.Figure()
    if mine.empty:
        return figure
    centre = mine.groupby(["cell_e", "cell_n"])["images"].sum().idxmax()
    e_lo, n_lo = centre[0] - window // 2, centre[1] - window // 2
    here = view.classes[
        view.classes["cell_e"].between(e_lo, e_lo + window - 1)
        & view.classes["cell_n"].between(n_lo, n_lo + window - 1)
    ]
    # The second group shown (the paper's purple) is the other group with most classes here.
    others = here[here["group"] != group]["group"]
    shown = [(group, FIG4_COLOURS[0])]
    if len(others):
        shown.append((int(others.value_counts().idxmax()), FIG4_COLOURS[1]))
    for rank, colour in shown:
        classes = here[here["group"] == rank]
        xs, ys = [], []
        steps = np.linspace(0.0, 1.0, WEDGE_ARC_POINTS)
        for row in classes.itertuples():
            cx, cy = row.cell_e - e_lo + 0.5, row.cell_n - n_lo + 0.5
            angles = np.radians(row.heading_min + steps * params.alpha)
            xs += [cx, *(cx + WEDGE_RADIUS * np.sin(angles)), cx, None]
            ys += [cy, *(cy + WEDGE_RADIUS * np.cos(angles)), cy, None]
        g = view.groups.iloc[rank]
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                fill="toself",
                mode="lines",
                line={"color": f"rgb{tuple(colour)}", "width": 1},
                name=f"G{g.u}{g.v}{g.w} ({len(classes)} classes here)",
            )
        )
    grid = {"tickvals": list(range(window + 1)), "showticklabels": False, "showgrid": True}
    figure.update_xaxes(**grid, range=[0, window], title="east")
    figure.update_yaxes(**grid, range=[0, window], scaleanchor="x", title="north")
    figure.update_layout(
        title=f"{window} x {window} cells of {params.M:g} m around the group's busiest cell",
        height=480,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return figure
