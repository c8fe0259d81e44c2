"""Compare zoos: the same taxonomy across zoos side by side — their phase maps (two to a row, so each keeps
its ticks and title), the fraction of each grid in each phase, and a metric's per-phase distribution in every
zoo (one point per cell)."""

from pathlib import Path

import polars as pl
import streamlit as st

from analysis.studies.by_phase import phase_shares, with_phase
from analysis.taxonomy.cells import metric_cells, scalar_metrics
from analysis.taxonomy.phases import classify, default_thresholds, labelable
from dashboard.charts import phase_fractions, phase_map, zoo_boxes
from dashboard.glossary import link
from dashboard.notebook import Slice
from dashboard.picker import current_zoo, load_cells, load_metrics, load_zoo
from dashboard.widgets import chart, declared, helptext, load_right, metric_name
from data.zoo.store import ZooError, builtin_zoos

# the "copy as Python" lines after loading one zoo's metrics rows at its epoch into `frame`
LABELLED = ("from analysis.studies.by_phase import labelled_cells\nfrom data.zoo.store import Zoo\n"
            "zoo = Zoo.open({root!r})\nlabelled = labelled_cells(frame, zoo.catalog, zoo.spec, {epoch!r})\n")
MAP = LABELLED + "frame = labelled"
SHARES = LABELLED + "from analysis.studies.by_phase import phase_shares\nframe = phase_shares(labelled, zoo.name)"
VALUES = LABELLED + ("from analysis.metrics.outputs import Aggregate\n"
                     "from analysis.studies.by_phase import with_phase\n"
                     "from analysis.taxonomy.cells import metric_cells\n"
                     "values = metric_cells(frame, zoo.catalog, zoo.spec, {epoch!r}, {metric!r}, {split!r}, {coord!r},"
                     " aggregate=Aggregate({aggregate!r}))\n"
                     "frame = with_phase(values, labelled, zoo.spec).with_columns(zoo=pl.lit(zoo.name))")


def per_zoo_sources(title: str, slices: list[tuple[str, Slice]]) -> None:
    """A chart over several zoos: the Python that loads each zoo's rows of it (their union is the chart's
    table; one snippet per zoo, since each reads its own directory)."""
    with st.expander(f"Copy as Python: {title}, one snippet per zoo", icon=":material/code:"):
        for name, source in slices:
            st.markdown(f"**{name}**")
            st.code(source.code(), language="python")


def at_epoch(zoo, epoch: int, then: str) -> Slice:
    """The slice of `zoo`'s metrics at `epoch` (every quantity the labels need) followed by `then`."""
    return Slice.of(zoo.root, "metrics", {"epoch": epoch}, then=then)


current = current_zoo()
st.title("Compare zoos")
known = {p.resolve(): p for p in builtin_zoos()}
known.setdefault(current.root.resolve(), current.root)
names = {str(p): load_zoo(p).name for p in known.values()}
chosen = st.multiselect("Zoos", list(names), default=list(names), format_func=names.get, key="compare_zoos",
                        help=helptext("Each zoo is drawn at its last analysis epoch with its own default "
                                      "thresholds.", "phase", "load", "temperature"))
extra = st.text_input("More zoo directories (comma-separated)", key="compare_extra", placeholder="/path/a, /path/b")
paths = chosen + [p.strip() for p in extra.split(",") if p.strip()]

zoos = []  # (zoo, epoch, labelled cells)
for path in paths:
    try:
        zoo = load_zoo(path)
    except (ZooError, ValueError, OSError) as e:
        st.error(f"{Path(path).name}: cannot open this zoo: {e}")
        continue
    epoch = max(zoo.spec.analysis_epochs)
    cells = load_cells(zoo.root, epoch)
    if not labelable(cells):
        st.info(f"{zoo.name}: no phase labels at epoch {epoch} yet (`phasezoo run {zoo.root}`).")
        continue
    zoos.append((zoo, epoch, classify(cells, default_thresholds(cells))))
if not zoos:
    st.warning("None of the chosen zoos has phase labels to compare.")
    st.stop()
st.caption(f"Each zoo at its last analysis epoch, labelled with its own default thresholds ({link('phase')}, "
           f"{link('tau-l')}, {link('epsilon')}, {link('tau-c')}). A white ring marks a cell near a threshold "
           f"({link('margin')}); the phase colours are those of the bars below.")


for row in range(0, len(zoos), 2):  # two maps to a row: each keeps its tick labels and its full title
    for col, (i, (zoo, epoch, labelled)) in zip(st.columns(2), enumerate(zoos[row:row + 2], start=row)):
        fig = phase_map(labelled, zoo.spec, title=f"{zoo.name}, epoch {epoch}", compact=True, load_right=load_right())
        chart(fig, labelled, f"compare_map_{i}_{zoo.name}", col,
              source=at_epoch(zoo, epoch, MAP.format(root=str(zoo.root), epoch=epoch)))
        col.caption(f"{zoo.spec.arch} on {zoo.spec.task}; load = {zoo.spec.load.knob}, "
                    f"temperature = {zoo.spec.temperature.knob}")

counts = pl.concat([phase_shares(lab, zoo.name) for zoo, _, lab in zoos])
chart(phase_fractions(counts, title="Fraction of each grid in each phase"), counts, "compare_fractions")
per_zoo_sources("the fractions", [(zoo.name, at_epoch(zoo, epoch, SHARES.format(root=str(zoo.root), epoch=epoch)))
                                  for zoo, epoch, _ in zoos])

# per-cell metrics of any compared zoo (a regression zoo has no accuracy; a zoo without the chosen one is named)
have = {}
for zoo, epoch, _ in zoos:
    m = load_metrics(zoo.root)
    have[zoo.name] = {tuple(r) for r in scalar_metrics(m.filter(pl.col("epoch") == epoch)).iter_rows()}
options = sorted(set().union(*have.values()))
if not options:
    st.info("The chosen zoos have no per-cell metric.")
    st.stop()
default = next((i for i, o in enumerate(options) if o[0] == "test_acc"), 0)
metric, split, coord = st.selectbox("Metric", options, index=default, key="compare_metric", format_func=metric_name,
                                    help=helptext("Any per-cell metric of the compared zoos; one point per cell, "
                                                  "its seeds aggregated as the metric declares.", "phase"))
out = declared(metric)
frames, sources = [], []
for zoo, epoch, labelled in zoos:
    if (metric, split, coord) not in have[zoo.name]:
        continue
    v = metric_cells(load_metrics(zoo.root), zoo.catalog, zoo.spec, epoch, metric, split, coord,
                     aggregate=out.aggregate)
    frames.append(with_phase(v, labelled, zoo.spec).with_columns(zoo=pl.lit(zoo.name)))
    sources.append((zoo.name, at_epoch(zoo, epoch, VALUES.format(
        root=str(zoo.root), epoch=epoch, metric=metric, split=split, coord=coord, aggregate=out.aggregate.name))))
dist = pl.concat(frames)
prefix = out.aggregate.prefix()
chart(zoo_boxes(dist, title=f"{prefix}{out.human} by phase (one point per cell; {prefix}seed mean)",
                y_title=prefix + out.axis_title, unit=out.unit), dist, "compare_by_phase")
per_zoo_sources("the distributions", sources)
if lacking := [name for name, h in have.items() if (metric, split, coord) not in h]:
    st.caption(f"Without {metric_name((metric, split, coord))}: {', '.join(lacking)}.")
