"""Command line: ``airtune run | validate | ls | report | sweep | flower``.

Errors a user can fix are printed on one line each (``error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from airtune.errors import AirtuneError


def _split_args(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """First item is the config file unless it is a ``key=value`` override."""
    if items and "=" not in items[0]:
        return items[0], list(items[1:])
    return None, list(items)


def _load(items: Sequence[str]):
    from airtune.config import load_config
    from airtune.experiment.validate import check

    path, overrides = _split_args(items)
    cfg = load_config(path, overrides)
    check(cfg)
    return cfg


def cmd_validate(ns: argparse.Namespace) -> int:
    from airtune.config import load_config
    from airtune.errors import ConfigError
    from airtune.experiment.validate import registry_errors

    path, overrides = _split_args(ns.args)
    try:
        cfg = load_config(path, overrides)
    except ConfigError as exc:
        errors = getattr(exc, "errors", None) or str(exc).splitlines()
        for line in errors:
            print(f"error: {line}", file=sys.stderr)
        return 2
    errors = registry_errors(cfg)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if errors:
        return 2
    from airtune.experiment.validate import ignored_settings

    for line in ignored_settings(cfg):
        print(f"warning: {line}", file=sys.stderr)
    print(f"ok: {path or 'built-in defaults'} is valid ({cfg.name}, strategy {cfg.strategy.name}, "
          f"{cfg.rounds} rounds, {cfg.num_devices} devices)")
    return 0


def cmd_run(ns: argparse.Namespace) -> int:
    from airtune.experiment import rundir
    from airtune.experiment.runner import run_experiment
    from airtune.experiment.validate import preflight
    from airtune.progress import RoundProgress, print_summary

    if ns.resume:
        requested = _load(ns.args) if ns.args else None
        run_dir = Path(ns.resume)
        cfg = rundir.resume_config(run_dir, requested)
    else:
        cfg = _load(ns.args)
        preflight(cfg)
        run_dir = Path(ns.out) if ns.out else rundir.default_run_dir(cfg)
        rundir.prepare(cfg, run_dir)
    rundir.attach_log_file(run_dir)
    logging.getLogger("airtune").info("run %s in %s (resume=%s)", cfg.name, run_dir, bool(ns.resume))
    from airtune.experiment.validate import ignored_settings

    for line in ignored_settings(cfg):
        logging.getLogger("airtune").warning("%s", line)
        print(f"warning: {line}", file=sys.stderr)
    with RoundProgress(cfg, enabled=not ns.quiet) as progress:
        summary = run_experiment(cfg, run_dir, resume=bool(ns.resume), on_round=progress.update)
    print_summary(summary, run_dir)
    return 0


def cmd_ls(ns: argparse.Namespace) -> int:
    from airtune.registry import ALL

    for kind, reg in ALL.items():
        print(f"{kind}: {', '.join(reg.names())}")
    return 0


def cmd_sweep(ns: argparse.Namespace) -> int:
    from airtune.sweep.run import run_sweep

    slurm = {}
    for item in ns.slurm or []:
        if "=" not in item:
            print(f"error: --slurm '{item}' is not KEY=VALUE; fix: e.g. --slurm partition=gpu", file=sys.stderr)
            return 2
        key, value = item.split("=", 1)
        slurm[key] = value

    def show(run_id: str, entry: dict) -> None:
        extra = f": {entry['error']}" if entry.get("error") else ""
        print(f"{entry['status']}: {run_id}{extra}", flush=True)

    manifest = run_sweep(ns.spec, ns.out, workers=ns.workers, executor=ns.executor, slurm=slurm, on_update=show)
    runs = manifest["runs"].values()
    failed = [e for e in runs if e.get("status") == "failed"]
    done = sum(e.get("status") == "done" for e in runs)
    print(f"sweep {manifest['name']}: {done} of {len(manifest['runs'])} runs done, {len(failed)} failed")
    return 1 if failed else 0


def cmd_report(ns: argparse.Namespace) -> int:
    from airtune.report import make_report
    from airtune.report.sweep_stats import is_sweep_dir, sweep_report

    if len(ns.run_dirs) == 1 and is_sweep_dir(ns.run_dirs[0]):
        out = Path(ns.out) if ns.out else Path(ns.run_dirs[0]) / "report"
        res = sweep_report(ns.run_dirs[0], out, target_accuracy=ns.target_accuracy, last_k=ns.last_k,
                           reference=ns.reference)
        print(res["table"])
        print()
        print(res["paired"])
        print(f"report: {res['report']}")
        for p in res["plots"]:
            print(f"plot: {p}")
        return 0
    out = Path(ns.out) if ns.out else Path(ns.run_dirs[0]) / "report"
    result = make_report([Path(d) for d in ns.run_dirs], out, target_accuracy=ns.target_accuracy,
                         metrics=ns.metric or (), sweep=ns.sweep, series=ns.series)
    print(result["table"])
    print(f"report: {result['report']}")
    for p in result["plots"]:
        print(f"plot: {p}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airtune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment (no arguments: the default experiment)")
    run.add_argument("args", nargs="*", help="[CONFIG.yaml] [key.sub=value ...]")
    run.add_argument("--out", help="run directory (default runs/<name>-<timestamp>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)
    val = sub.add_parser("validate", help="check a config and print every error at once")
    val.add_argument("args", nargs="*", help="[CONFIG.yaml] [key.sub=value ...]")
    val.set_defaults(func=cmd_validate)
    ls = sub.add_parser("ls", help="list registered models, strategies, allocators, partitioners")
    ls.set_defaults(func=cmd_ls)
    rep = sub.add_parser("report", help="plots and a comparison table from run directories")
    rep.add_argument("run_dirs", nargs="+")
    rep.add_argument("--out", help="output folder (default FIRST_RUN/report)")
    rep.add_argument("--target-accuracy", type=float, default=None)
    rep.add_argument("--metric", action="append", metavar="KEY",
                     help="also plot this metrics.jsonl key against the round (repeatable)")
    rep.add_argument("--sweep", metavar="CONFIG_KEY",
                     help="also plot rounds and simulated time to --target-accuracy against this config key "
                          "(e.g. num_devices)")
    rep.add_argument("--series", metavar="CONFIG_KEY", default="strategy.name",
                     help="config key whose values are the lines of --sweep (default strategy.name)")
    rep.add_argument("--last-k", type=int, default=3, help="sweep report: evaluations averaged at the end (default 3)")
    rep.add_argument("--reference", metavar="SCHEME", help="sweep report: scheme the others are compared with "
                                                          "(default the spec's first)")
    rep.set_defaults(func=cmd_report)
    sw = sub.add_parser("sweep", help="run a sweep spec: schemes x grid x seeds, resumable (airtune/sweep)")
    sw.add_argument("spec", help="sweep YAML (see src/airtune/sweep/spec.py and configs/sweeps/)")
    sw.add_argument("--out", help="sweep folder (default sweeps/<name>); rerun the same command to resume")
    sw.add_argument("--workers", type=int, help="parallel worker processes (default: the spec's)")
    sw.add_argument("--executor", default="processes", help="processes (default), submitit-local or slurm")
    sw.add_argument("--slurm", action="append", metavar="KEY=VALUE",
                    help="submitit SLURM parameter (repeatable), e.g. partition=gpu, timeout_min=600")
    sw.set_defaults(func=cmd_sweep)
    from airtune.flower.commands import add_flower_parser  # no flwr import until a flower command runs

    add_flower_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    # a deprecation inside transformers that PEFT triggers; not actionable for users
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except AirtuneError as exc:
        for line in str(exc).splitlines() or [exc.__class__.__name__]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: resume with `airtune run --resume RUN_DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
