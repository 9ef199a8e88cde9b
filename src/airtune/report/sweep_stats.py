"""``airtune report SWEEP_DIR``: statistics over the seeds of a sweep (``airtune sweep``).

For every (scheme, grid point): the mean and 95 % bootstrap interval over seeds of final accuracy,
best accuracy, the mean of the last ``k`` evaluations, simulated time, uplink bits and energy; the
Kaplan–Meier median rounds, simulated time and cumulative uplink bits to a target accuracy (the
last: communication at equal accuracy) with the number of seeds that
reached it (a run that never did is censored at its horizon, ``report/statistics.py``). Then the
paired differences of every scheme against the reference scheme (the spec's first) on the seeds
both ran, with a verdict. Figures: accuracy against round, one per grid point, with the mean
line, the interval band and one dot per seed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from airtune.errors import DataError
from airtune.report.runs import Run, load_run
from airtune.report.statistics import mean_ci, paired_difference, time_to_target
from airtune.report.tables import run_stats

__all__ = ["METRICS", "is_sweep_dir", "seed_metrics", "sweep_report"]

METRICS = (  # key, label, higher is better, scale, format
    ("final_accuracy", "final accuracy", True, 1.0, ".4f"),
    ("best_accuracy", "best accuracy", True, 1.0, ".4f"),
    ("last_k_accuracy", "mean of last k evals", True, 1.0, ".4f"),
    ("sim_time_s", "simulated time (s)", False, 1.0, ".1f"),
    ("uplink_bits", "uplink (Mbit)", False, 1e-6, ".1f"),
    ("energy_j", "energy (J)", False, 1.0, ".2f"),
)
TARGET_METRICS = (  # paired only on the seeds where both schemes reached the target (no censored value)
    ("rounds_to_target", "rounds to target (both reached)", False, 1.0, ".2f"),
    ("time_to_target_s", "sim time to target (s; both reached)", False, 1.0, ".1f"),
    ("uplink_to_target_bits", "uplink to target (Mbit; both reached)", False, 1e-6, ".1f"),
)
TARGET_KEYS = frozenset(m[0] for m in TARGET_METRICS)


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / "manifest.json").exists()


def seed_metrics(run: Run, target_accuracy: float | None, last_k: int) -> dict[str, Any]:
    """One run's numbers for the sweep tables, time-to-target with its censoring flag."""
    st = run_stats(run, target_accuracy)
    accs = [float(m["accuracy"]) for m in run.metrics if m.get("accuracy") is not None]
    out = {k: st.get(k) for k in ("final_accuracy", "best_accuracy", "sim_time_s", "uplink_bits", "energy_j")}
    out["last_k_accuracy"] = float(np.mean(accs[-last_k:])) if accs else None
    rounds = len(run.metrics)
    reached = st["rounds_to_target"] is not None
    out["target_reached"] = reached
    out["rounds_to_target"] = st["rounds_to_target"] if reached else rounds          # else censored at horizon
    sim = [float(m["sim_time_s"]) for m in run.metrics if m.get("sim_time_s") is not None]
    out["time_to_target_s"] = (sim[st["rounds_to_target"] - 1] if reached else (sim[-1] if sim else None))
    cum_up = [float(m.get("cum_uplink_bits", 0.0)) for m in run.metrics]   # communication at equal accuracy
    out["uplink_to_target_bits"] = (cum_up[st["rounds_to_target"] - 1] if reached else (cum_up[-1] if cum_up else None))
    return out


def _groups(sweep_dir: Path) -> tuple[dict, list[str], list[str]]:
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    groups: dict[tuple[str, str], dict[int, Run]] = defaultdict(dict)
    schemes: list[str] = []
    missing = []
    for run_id, entry in manifest["runs"].items():
        if entry["scheme"] not in schemes:
            schemes.append(entry["scheme"])
        point = json.dumps(entry.get("point", {}), sort_keys=True)
        if entry.get("status") != "done":
            missing.append(f"{run_id} ({entry.get('status')}{': ' + entry['error'] if entry.get('error') else ''})")
            continue
        groups[(entry["scheme"], point)][int(entry["seed"])] = load_run(sweep_dir / entry["run_dir"])
    if not groups:
        raise DataError(f"{sweep_dir}: no finished run in manifest.json; fix: run `airtune sweep SPEC` first")
    return groups, schemes, missing


def sweep_report(sweep_dir: str | Path, out_dir: str | Path, *, target_accuracy: float | None = None,
                 last_k: int = 3, reference: str | None = None) -> dict[str, Any]:
    """Write ``report.md`` and the figures into ``out_dir``; return the tables and paths."""
    sweep_dir, out = Path(sweep_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups, schemes, missing = _groups(sweep_dir)
    ref = reference or schemes[0]
    if ref not in schemes:
        raise DataError(f"--reference = '{ref}': not a scheme of this sweep; fix: choose one of {', '.join(schemes)}")
    per = {g: {s: seed_metrics(r, target_accuracy, last_k) for s, r in runs.items()} for g, runs in groups.items()}
    summary = _summary_table(per, target_accuracy, last_k)
    paired = _paired_table(per, schemes, ref, target=target_accuracy is not None)
    plots = _plots(groups, out)
    text = ["# airtune sweep report", "", f"Sweep: `{_shown(sweep_dir)}`; {sum(len(v) for v in per.values())} "
            f"finished runs; intervals are 95 % percentile-bootstrap intervals of the mean over seeds.", "",
            "## Per scheme and grid point", "", summary, "", f"## Paired differences against `{ref}`", "",
            "Differences are scheme minus reference on the seeds both finished; the verdict needs the "
            "interval to exclude 0.", "", paired, ""]
    if target_accuracy is not None:
        text += ["Time to target: a run that never reached the target is censored at its last round (its "
                 "simulated time), not averaged as if it had reached it; the median is the Kaplan–Meier "
                 "estimate, '—' when fewer than half the seeds reached the target.", ""]
    if missing:
        text += ["## Runs not included", ""] + [f"- {m}" for m in missing] + [""]
    text += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    report = out / "report.md"
    report.write_text("\n".join(text))
    return {"table": summary, "paired": paired, "report": report, "plots": plots, "missing": missing}


def _label(group: tuple[str, str]) -> str:
    point = json.loads(group[1])
    return group[0] + ("" if not point else " (" + ", ".join(f"{k}={v}" for k, v in point.items()) + ")")


def _summary_table(per: dict, target: float | None, last_k: int) -> str:
    cols = [label.replace("k evals", f"{last_k} evals") for _, label, *_ in METRICS]
    head = ["scheme (grid point)", "seeds", *cols]
    if target is not None:
        head += [f"rounds to {target:g} (KM median; reached)", f"sim time to {target:g} (s)",
                 f"uplink to {target:g} (Mbit)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g, seeds in per.items():
        cells = [_label(g), str(len(seeds))]
        for key, _, _, scale, spec in METRICS:
            vals = [v[key] * scale for v in seeds.values() if v[key] is not None]
            cells.append(mean_ci(vals).fmt(spec))
        if target is not None:
            reached = [v["target_reached"] for v in seeds.values()]
            r = time_to_target([v["rounds_to_target"] for v in seeds.values()], reached)
            t = time_to_target([v["time_to_target_s"] for v in seeds.values()], reached)
            b = time_to_target([v["uplink_to_target_bits"] * 1e-6 for v in seeds.values()], reached)
            cells += [f"{'—' if r.median is None else f'{r.median:g}'} ({r.reached}/{r.n})",
                      f"{'—' if t.median is None else f'{t.median:.1f}'} ({t.reached}/{t.n})",
                      f"{'—' if b.median is None else f'{b.median:.1f}'} ({b.reached}/{b.n})"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _paired_table(per: dict, schemes: list[str], ref: str, *, target: bool = False) -> str:
    rows = ["| grid point | scheme vs reference | metric | mean difference [95 % CI] | seeds | verdict |",
            "|---|---|---|---|---|---|"]
    points = sorted({g[1] for g in per})
    for point in points:
        base = per.get((ref, point))
        if base is None:
            continue
        for scheme in schemes:
            other = per.get((scheme, point))
            if scheme == ref or other is None:
                continue
            seeds = sorted(set(base) & set(other))
            both = {s for s in seeds if other[s]["target_reached"] and base[s]["target_reached"]} if target else set()
            for key, label, higher, scale, spec in METRICS + (TARGET_METRICS if target else ()):
                keep = [s in both or key not in TARGET_KEYS for s in seeds]
                a = [(other[s][key] if other[s][key] is not None and k else np.nan) * scale for s, k in zip(seeds, keep)]
                b = [(base[s][key] if base[s][key] is not None and k else np.nan) * scale for s, k in zip(seeds, keep)]
                res = paired_difference(a, b, higher_is_better=higher, names=(scheme, ref))
                pt = ", ".join(f"{k}={v}" for k, v in json.loads(point).items()) or "—"
                rows.append(f"| {pt} | {scheme} vs {ref} | {label} | {res.diff.fmt(spec)} | {res.diff.n} | "
                            f"{res.verdict} |")
    return "\n".join(rows)


def _plots(groups: dict, out: Path) -> list[Path]:
    from airtune.report.plots import finish_plot, new_axes

    paths = []
    for i, point in enumerate(sorted({g[1] for g in groups})):
        pt = json.loads(point)
        title = "accuracy over seeds" + ("" if not pt else " (" + ", ".join(f"{k}={v}" for k, v in pt.items()) + ")")
        fig, ax = new_axes(title, "round", "test accuracy")
        plotted = False
        for (scheme, p), runs in groups.items():
            if p != point:
                continue
            by_round: dict[int, list[float]] = defaultdict(list)
            for run in runs.values():
                for m in run.metrics:
                    if m.get("accuracy") is not None:
                        by_round[int(m["round"]) + 1].append(float(m["accuracy"]))
            xs = sorted(by_round)
            if not xs:
                continue
            cis = [mean_ci(by_round[x], n_resamples=1999) for x in xs]
            line = ax.plot(xs, [c.mean for c in cis], label=f"{scheme} (n={len(runs)})")[0]
            lo = [c.lo if np.isfinite(c.lo) else c.mean for c in cis]
            hi = [c.hi if np.isfinite(c.hi) else c.mean for c in cis]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
            for x in xs:
                ax.scatter([x] * len(by_round[x]), by_round[x], s=8, color=line.get_color(), alpha=0.6)
            plotted = True
        paths.append(finish_plot(fig, ax, out / f"sweep_accuracy_{i}.png", plotted))
    return paths


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (so a committed report
    does not carry the machine's absolute paths), else absolute."""
    full = path.resolve()
    try:
        return str(full.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(full)
