"""Zoo overview: the spec, grid coverage, and accuracy and loss over the load × temperature grid."""

import polars as pl
import streamlit as st

from analysis.metrics.outputs import COUNT, colour_scale
from analysis.taxonomy.cells import QUANTITIES, cell_stats, coverage, metric_cells
from dashboard.charts import grid_heatmap
from dashboard.glossary import link
from dashboard.notebook import Slice
from dashboard.picker import current_zoo, load_metrics
from dashboard.widgets import chart, declared, helptext, load_right, number_column


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def non_finite(cells: pl.DataFrame) -> int:
    """How many cells have a non-finite seed statistic (a diverged seed's inf, a NaN): the heatmap draws them
    blank, the page says how many."""
    stats = [c for c in ("mean", "std", "min", "max") if c in cells.columns]
    return int(cells.select(pl.any_horizontal([~pl.col(c).is_finite() for c in stats]).fill_null(False).sum()).item())


zoo = current_zoo()
spec, cat = zoo.spec, zoo.catalog

st.title(f"Zoo: {spec.name}")
st.caption(spec.description)
cov = coverage(cat, spec)
n_models, n_expected = cat["model_id"].n_unique(), spec.n_models
c1, c2, c3, c4 = st.columns(4)
c1.metric("Models", f"{n_models} / {n_expected}")
c2.metric("Stored checkpoints", zoo.checkpoints().height)
c3.metric("Epochs logged", int(cat["epoch"].max()) if cat.height else 0)
c4.metric("Parameters", f"{cat['n_params'].min():,} – {cat['n_params'].max():,}" if cat.height else "—")

with st.expander("Spec and axes", expanded=False):
    st.markdown(
        f"**Task** `{spec.task}` · **architecture** `{spec.arch}` · **seeds** {list(spec.seeds)}  \n"
        f"**{link('load', 'Load')} axis** `{spec.load.knob}` (load {'rises' if spec.load.increases else 'falls'} "
        f"as it grows) · **{link('temperature', 'temperature')} axis** `{spec.temperature.knob}` "
        f"(temperature {'rises' if spec.temperature.increases else 'falls'} as it grows)  \n"
        f"**Checkpoint epochs** {list(spec.checkpoint_epochs)} · **analysis epochs** {list(spec.analysis_epochs)}"
    )
    st.code(zoo.spec_text, language="toml")

if cat.is_empty():
    st.warning("This zoo has no trained models yet.")
    st.stop()

opened = f"from data.zoo.store import Zoo\nzoo = Zoo.open({str(zoo.root)!r})\n"  # the snippets' zoo


def stats_source(column: str) -> Slice:
    """The rows of a seed-statistics map: this epoch's catalog rows, then cell_stats over `column`."""
    return Slice.of(zoo.root, "catalog", {"epoch": epoch}, then="from analysis.taxonomy.cells import cell_stats\n"
                    + opened + f"frame = cell_stats(frame, zoo.spec, {epoch}, {column!r})")


if n_models < n_expected:
    st.warning(
        f"Incomplete zoo: {n_expected - n_models} of {n_expected} models missing "
        "(resume with `phasezoo generate`)."
    )
    chart(
        grid_heatmap(
            cov.rename({"n_models": "value"}),
            spec,
            "value",
            title="Models per cell",
            scale=COUNT,
            hover_label="models",
            load_right=load_right(),
        ),
        cov,
        "overview_coverage",
        st,
        source=Slice.of(zoo.root, "catalog", then="from analysis.taxonomy.cells import coverage\n" + opened
                        + "frame = coverage(frame, zoo.spec)"),
    )

epochs = sorted(cat["epoch"].unique())
epoch = st.select_slider(
    "Epoch",
    options=epochs,
    value=max(e for e in spec.analysis_epochs if e in epochs)
    if any(e in epochs for e in spec.analysis_epochs)
    else epochs[-1],
    key="overview_epoch",
)
# A regression zoo (the PINN) has no accuracy: its headline is the test loss, the MSE against the exact solution.
regression = cat["test_acc"].is_null().all()
fixed = not regression and st.toggle(
    "Fixed 0–100 % accuracy scale",
    value=False,
    key="overview_fixed_scale",
    help=helptext("Off: the colour range follows the data, so small differences show."),
)
left, right = st.columns(2)
head = "test_loss" if regression else "test_acc"
head_out, loss_out = declared(head), declared("train_loss")
acc = cell_stats(cat, spec, epoch, head)
loss = cell_stats(cat, spec, epoch, "train_loss")
bad_acc, bad_loss = non_finite(acc), non_finite(loss)
if bad_acc or bad_loss:
    st.warning(f"Non-finite values at epoch {epoch} (a diverged run, or NaN in the catalog) in {bad_acc} "
               f"{head_out.human} and {bad_loss} {loss_out.human} cell(s): drawn blank.")
chart(
    grid_heatmap(
        acc,
        spec,
        title=(f"Test MSE against the exact solution (seed mean, log colour), epoch {epoch}" if regression
               else f"{sentence(head_out.human)} (seed mean), epoch {epoch}"),
        scale=colour_scale(head_out),
        fixed=fixed,
        hover_label=head_out.human,
        colour_title=head_out.axis_title,
        load_right=load_right(),
    ),
    acc,
    f"overview_{head}",
    left,
    source=stats_source(head),
)
chart(
    grid_heatmap(
        loss,
        spec,
        title=f"{sentence(loss_out.human)} (seed mean, log colour), epoch {epoch}",
        scale=colour_scale(loss_out),
        hover_label=loss_out.human,
        colour_title=QUANTITIES["train_loss"].axis_title(spec.task),  # its unit is the task's
        load_right=load_right(),
    ),
    loss,
    "overview_train_loss",
    right,
    source=stats_source("train_loss"),
)
st.caption(
    "Losses and accuracies are clean eval-mode re-evaluations on the full split at each logged epoch. "
    f"x: load {'rises' if load_right() else 'falls'} to the right; y: the hottest (noisiest) training is on top."
)

# The sequence zoo's grokking delay (epochs from fitting the training pairs to generalising), on the grid.
metrics = load_metrics(zoo.root)
grok = metrics.filter((pl.col("metric") == "grokking_delay") & (pl.col("epoch") == epoch))
if not grok.is_empty():
    delay_out, grok_split = declared("grokking_delay"), grok["split"][0]
    delay = metric_cells(metrics, cat, spec, epoch, "grokking_delay", grok_split, aggregate=delay_out.aggregate)
    chart(
        grid_heatmap(delay, spec, "value", title=f"{sentence(delay_out.human)} ({delay_out.unit}, mean over the "
                     f"seeds that grokked), epoch {epoch}", scale=colour_scale(delay_out),
                     hover_label=delay_out.human, colour_title=delay_out.axis_title, load_right=load_right()),
        delay,
        "overview_grokking_delay",
        source=Slice.of(zoo.root, "metrics", {"metric": "grokking_delay", "epoch": epoch}, then=(
            "from analysis.metrics.outputs import Aggregate\nfrom analysis.taxonomy.cells import metric_cells\n"
            + opened + f"frame = metric_cells(frame, zoo.catalog, zoo.spec, {epoch}, 'grokking_delay', "
            f"{grok_split!r}, aggregate=Aggregate({delay_out.aggregate.name!r}))")),
    )
    st.caption("Blank cells: no seed both fitted the training pairs (≥ 99 %) and generalised (≥ 95 % test "
               "accuracy) by this epoch. The delay is read off the logged curve, to the zoo's `eval_every`.")

with st.expander("Per-cell table"):
    table = (
        acc.rename({"mean": head, "std": f"{head}_std"})
        .drop("min", "max")
        .join(
            loss.select(spec.load.knob, spec.temperature.knob, pl.col("mean").alias("train_loss")),
            on=[spec.load.knob, spec.temperature.knob],
        )
    )
    st.dataframe(table, hide_index=True, key="overview_table", column_config={
        head: number_column(head_out, prefix="seed mean "),
        f"{head}_std": number_column(head_out, prefix="± std of "),
        "n_seeds": st.column_config.NumberColumn("Seeds", help=helptext("Seeds in the cell.", "stderr")),
        "train_loss": number_column(loss_out, prefix="seed mean "),
    })
