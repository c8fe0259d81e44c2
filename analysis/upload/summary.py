"""The account of one upload's result as the CLI prints it (and the dashboard shows under *Summary*): its file,
zoo and cell, both verdicts with what qualifies them, the evidence, its place in weight space and what to change."""
from __future__ import annotations

import math

from analysis.upload.failures import Refused
from analysis.upload.report import KnobEstimate, Report


def _fmt(v, spec: str = ".4g") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _estimate_lines(knob: str, e: KnobEstimate) -> list[str]:
    """An estimated knob: how, how sure, and the verdict at each value it could have taken."""
    lines = [f"  {knob} estimated ({e.candidates[0].votes}/{e.k} votes): {e.method}"]
    lines += [f"    {knob}={c.value}: {c.votes}/{e.k} votes, nearest zoo model {_fmt(c.nearest, '.3g')}; "
              f"that cell is {c.zoo_phase or '—'}, the rules with its seeds' mc and CKA: {c.phase or '—'}"
              for c in e.candidates if c.nearest is not None]
    return lines


def summary(r: Report | Refused) -> str:
    """A readable account of one result."""
    if isinstance(r, Refused):
        return f"{r.file}: REFUSED — {r.error}"
    lines = [f"{r.file}  (sha256 {r.sha256[:12]}…, {r.n_params:,} parameters)"]
    lines += [f"  note: {n}" for n in r.notes]
    if r.zoo is None:
        lines.append("  matches no zoo:")
        lines += [f"    {m.zoo}: {'; '.join(m.problems)}" for m in r.matches]
    elif r.weights_only is not None:  # recognised, nothing measured: the phase from the weights alone
        w = r.weights_only
        lines.append(f"  zoo: {next(m for m in r.matches if m.ok).zoo} (its task data is not here: nothing measured)")
        lines.append(f"  PHASE (from the weights alone, no task data here): {w.words()}")
        lines.append(f"    {w.held_out()}")
    else:
        m = next(m for m in r.matches if m.ok)
        lines.append(f"  zoo: {m.zoo} ({m.arch} {dict(m.arch_params)}), compared at epoch {r.epoch}")
        lines.append("  cell: " + ", ".join(f"{k}={v.value}" + (f" (grid {v.grid})" if v.grid != v.value else "")
                                            + f" [{v.source}]" for k, v in r.cell.items()))
        for k, v in r.cell.items():
            if v.estimate is not None:
                lines += _estimate_lines(k, v.estimate)
        ru, cl = r.rule, r.classifier
        if ru is not None:
            lines.append(f"  PHASE (taxonomy rules): {ru.phase}" + (f" — {ru.reason}" if ru.reason else "")
                         + (f"  (near {', '.join(c.symbol for c in ru.near)})" if ru.near else ""))
            lines.append(f"    ({ru.n_pairs} pair(s) with {ru.pairs_with or 'nothing'}; the zoo's default thresholds)")
            lines += [f"    {'near: ' if c.near else ''}{c.sentence()}" for c in ru.checks]
        if cl is not None and cl.withheld:
            lines.append(f"  PHASE (classifier): none — {cl.withheld}")
        elif cl is not None:
            probs = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cl.probabilities.items(), key=lambda kv: -kv[1]))
            lines.append(f"  PHASE (classifier, {len(cl.features)} single-model features): {cl.words()}  [{probs}]"
                         + ("  (extrapolating: unlike every zoo model)" if cl.extrapolating else ""))
        if cl is not None and cl.validation is not None:
            lines.append(f"    classifier validated on the zoo: {cl.validation.words()}")
        if cl is not None and cl.across is not None:
            lines.append(f"    trained on the other zoos instead: {cl.across.words()}")
        if cl is not None and cl.calibration is not None:
            lines += [f"    calibration ({j.scheme}): ECE {j.ece:.2f}; {j.words()}" for j in cl.calibration.judgements]
            if cl.poorly_calibrated:
                lines.append(f"    poorly calibrated here: {cl.calibration.reason}")
        for e in r.evidence:
            lines.append(f"    {e.quantity:14s} {_fmt(e.value):>10s}  threshold {_fmt(e.threshold):>8s}  "
                         f"zoo cells {_fmt(e.zoo_min)} … {_fmt(e.zoo_median)} … {_fmt(e.zoo_max)}"
                         + (f"  ({e.zoo_fraction_below:.0%} of cells below)" if e.zoo_fraction_below is not None
                            else ""))
        p = r.placement
        if p is not None and p.neighbours:
            if p.identical_to:
                lines.append(f"  identical to zoo model {p.identical_to}")
            lines.append("  nearest zoo models (weight space): " + ", ".join(
                f"{n.model_id} [{n.phase}] {n.distance:.3g}" for n in p.neighbours))
        elif p is not None and p.note:
            lines.append(f"  placement: {p.note}")
        lines += [f"  failed: {e}" for e in r.errors]
        if r.advice:
            lines.append("  what to change: " + r.advice.replace("\n", "\n    "))
    if r.data_free:
        alphas = [d.alpha for d in r.data_free if d.alpha is not None]
        lines.append(f"  data-free: {len(r.data_free)} weight matrices; heavy-tail α "
                     + (f"{min(alphas):.2f} … {max(alphas):.2f}" if alphas else "not fitted (layers too small)")
                     + f"; stable rank {min(d.stable_rank for d in r.data_free):.3g} … "
                       f"{max(d.stable_rank for d in r.data_free):.3g}")
    lines.append(f"  ({r.seconds:.1f} s)")
    return "\n".join(lines)
