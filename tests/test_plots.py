"""The progress figure: labels clear of each other, the title and the legend; the legend over
no point; experiment numbers as the loop's refs give them; PNG, PDF and SVG."""

from __future__ import annotations

import itertools

import pytest

from nerlab import analysis
from nerlab.plots import plt, progress_figure
from nerlab.results import append_row
from tests.helpers import analyze_py, write_loop_log


def crowded(tmp_path):
    """A history whose kept points are close together: neighbours fight for label space."""
    path = tmp_path / "results.tsv"
    write_loop_log(path, n=60, seed=3)
    df = analysis.load_experiments(path, "ncbi_disease")
    df.loc[df["status"] == "keep", "dev_f1_std"] = 0.01  # repeats: a spread to draw
    df.loc[df["n"].between(20, 30) & (df["status"] != "crash"), "status"] = "keep"
    return df


def test_labels_never_overlap_and_the_legend_hides_no_point(tmp_path):
    df = crowded(tmp_path)
    fig = progress_figure(df)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(labels) >= 8
    title = ax.title.get_window_extent(renderer)
    legend = ax.get_legend().get_window_extent(renderer)
    inside = ax.get_window_extent(renderer)
    for a, b in itertools.combinations(labels, 2):
        assert not a.overlaps(b)
    for box in labels:
        assert not box.overlaps(title) and not box.overlaps(legend)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and box.y1 <= inside.y1
    points = ax.transData.transform(df[["n", "dev_f1"]].fillna(0).to_numpy(dtype=float))
    assert not any(legend.contains(x, y) for x, y in points)
    assert not legend.overlaps(inside) and not title.overlaps(inside)
    plt.close(fig)


@pytest.mark.parametrize(
    "suffix, magic", [(".pdf", b"%PDF"), (".svg", b"<?xml"), (".png", b"\x89PNG")]
)
def test_progress_in_vector_formats(tmp_path, suffix, magic):
    path = tmp_path / "results.tsv"
    write_loop_log(path, n=12)
    out = tmp_path / f"progress{suffix}"
    analyze_py("progress", "--results", str(path), "--out", str(out))
    assert out.read_bytes().startswith(magic)


def test_descriptions_are_drawn_as_written_never_as_mathtext(tmp_path):
    path = tmp_path / "results.tsv"
    write_loop_log(path, n=6)
    for i, text in enumerate(["lr $x^ 50%", "$\\frac{1}{0}$ <b>\x1b[31m"]):
        append_row(path, {"commit": f"m{i}", "target": "ncbi_disease", "dev_f1": "0.99",
                          "status": "keep", "description": text})  # fmt: skip
    out = tmp_path / "progress.png"
    analyze_py("progress", "--results", str(path), "--out", str(out))
    assert out.read_bytes().startswith(b"\x89PNG")
    fig = progress_figure(analysis.load_experiments(path, "ncbi_disease"))
    key = fig.axes[1].texts[0].get_text()
    assert "lr $x^ 50%" in key and "$\\frac{1}{0}$ <b>\\x1b[31m" in key
    plt.close(fig)
