"""The glossary every help icon links to: the terms the pages use, one definition each, with the section of
docs/science.md that says more. Drawn by the Glossary page (views/glossary.py); `link` is how a help text
points at a term."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PAGE = "glossary"  # the page's url_path
SCIENCE = Path(__file__).resolve().parents[1] / "docs" / "science.md"


@dataclass(frozen=True)
class Term:
    anchor: str  # the URL fragment: /glossary#<anchor>
    name: str
    text: str  # Markdown, one paragraph


def science_link(number: int | str, text: str | None = None) -> str:
    """A Markdown link to section `number` of the science notes on the Glossary page."""
    return f"[{text or f'science notes §{number}'}](/{PAGE}#science-{number})"


TERMS = {t.anchor: t for t in (
    Term("load", "Load", "How much data the model must fit relative to its capacity. Fewer parameters (a "
         "narrower network) or more data mean a higher load; each zoo declares which knob is its load and in which "
         "direction it raises it (width, β of a PINN, the training fraction of a transformer)."),
    Term("temperature", "Temperature", "The noise of training: a smaller batch or a larger learning rate is hotter."),
    Term("phase", "Phase", "A region of the load × temperature plane where models behave alike (Yang et al. 2021): "
         "I–II under-fitted (train loss above τ_L), III poorly connected, IV-A well connected but dissimilar, "
         "IV-B well connected and similar — the generalising phase. Decision order: "
         "[science notes §1](/glossary#science-1)."),
    Term("mc", "mc (mode connectivity)", "The training error along the best low-loss path between two seeds "
         "(a trained quadratic Bézier curve) against the error at its ends, in the task's units (percentage "
         "points of error). Below −ε: a barrier separates the seeds (phases I/III)."),
    Term("cka", "CKA", "Centred kernel alignment of two seeds' logits on the test inputs (Kornblith et al. 2019): "
         "1 = the same representation up to rotation and scale. At or above τ_C inside phase IV: IV-B."),
    Term("tau-l", "τ_L", "The train-loss threshold: a cell whose seed-mean train loss is above it is under-fitted "
         "(phase I or II)."),
    Term("epsilon", "ε", "The mode-connectivity tolerance: mc < −ε is a barrier."),
    Term("tau-c", "τ_C", "The CKA threshold that splits phase IV into IV-A (below) and IV-B (at or above)."),
    Term("margin", "Margin", "How far a cell's quantity is from its threshold, in the quantity's units (the loss "
         "margin in decades of the ratio to τ_L). A cell with a small margin is near a threshold: a small change "
         "of that threshold flips its phase."),
    Term("lambda-max", "λ_max", "The largest eigenvalue of the loss Hessian: the sharpness of the minimum, "
         "estimated by Lanczos iteration on Hessian-vector products."),
    Term("trace", "Hessian trace", "The sum of the Hessian's eigenvalues (mean curvature × parameters), exact "
         "where the ReLU identity applies, else estimated by Hutch++ with its standard error."),
    Term("hutchpp", "Hutch++", "A trace estimator (Meyer et al. 2021): an exact trace on a low-rank sketch plus "
         "Hutchinson's estimate on the rest; its error falls as 1/m instead of 1/√m with m products."),
    Term("slq", "SLQ", "Stochastic Lanczos quadrature (Ghorbani et al. 2019): the Hessian's spectral density "
         "(ESD) from a few Lanczos runs, each eigenvalue smoothed by a Gaussian."),
    Term("esd", "ESD", "Empirical spectral density of the Hessian: how its eigenvalues are distributed."),
    Term("alpha", "α (power-law exponent)", "The exponent of a power law fitted to the tail of a layer's weight "
         "eigenvalues (Martin & Mahoney 2021); data-free. 2–4: well trained; larger: under-trained."),
    Term("stable-rank", "Stable rank", "‖W‖²_F / ‖W‖²₂ of a layer's weights: how many directions carry its norm."),
    Term("pca", "PCA", "Principal component analysis of the flattened weights; each axis's explained variance "
         "says how much of the models' spread it shows."),
    Term("umap", "UMAP", "A non-linear 2-D map of the weights that keeps neighbourhoods (McInnes et al. 2018); "
         "its axes have no units."),
    Term("separation", "Phase separation", "How well a 2-D map separates phases: the leave-one-out k-nearest-"
         "neighbour phase accuracy of its points."),
    Term("stderr", "± standard error", "The standard error of a mean over seeds (std / √n), or an estimator's own "
         "standard error where it reports one (Hutch++)."),    Term("ensemble", "Ensemble", "The average of several models' class probabilities. Its gain is its accuracy "
         "over its members' mean accuracy; disagreement is the share of test inputs where members' predictions "
         "differ. Phase-consistent ensembles draw all members from one phase (" + science_link(4) + ")."),
    Term("averaging", "Weight averaging", "One model from the average of several models' weights: over the epochs "
         "of one run, or over seeds after aligning their hidden units (Git Re-Basin weight matching, Ainsworth "
         "et al. 2023). Its accuracy delta is against the members'."),
    Term("transfer", "Transfer", "A model's features reused on another task (a new linear head fitted on the target "
         "task's training split); the delta is against a head on random features."),
    Term("pruning", "Pruning", "Global magnitude pruning: the smallest weights across all layers set to zero at a "
         "sparsity, with the accuracy retained as pruned and after a short fine-tune."),
    Term("wise-ft", "WiSE-FT", "Weight-space ensembling of a pre-trained and a fine-tuned model (Wortsman et al. "
         "2022); a published zoo's own result, imported as published."),
)}


def cite(text: str) -> str:
    """`text` with every "science.md §N" (the analysis layer's provenance strings cite the notes so) as a link to
    that section of the science notes."""
    return re.sub(r"science\.md §(\d+)", lambda m: science_link(m[1]), text)


def link(anchor: str, text: str | None = None) -> str:
    """A Markdown link to a term's entry on the Glossary page (KeyError for a term it lacks: a typo must fail)."""
    return f"[{text or TERMS[anchor].name}](/{PAGE}#{anchor})"


@dataclass(frozen=True)
class Section:
    """A numbered section of docs/science.md ("## 1. Two control knobs…"), drawn under the glossary's
    "Science notes" at /glossary#science-<number>."""

    number: str
    title: str
    text: str  # its Markdown, subsections included

    @property
    def anchor(self) -> str:
        return f"science-{self.number}"


def science_sections(text: str) -> list[Section]:
    """The numbered level-2 sections of `text` (the notes' preamble and any unnumbered section are left out)."""
    parts = re.split(r"^## (\d+)\. (.+)$", text, flags=re.MULTILINE)
    # re.split with two groups: [preamble, number, title, body, number, title, body, …]
    return [Section(n, t.strip(), body.strip()) for n, t, body in zip(parts[1::3], parts[2::3], parts[3::3])]

