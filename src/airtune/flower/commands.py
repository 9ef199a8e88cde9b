"""The ``airtune flower`` commands (``run``, ``app``): argument parsing and their bodies.

No flwr import here, so ``airtune --help`` works without the extra; a missing Flower shows up
as one line when a command needs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from airtune.errors import ConfigError
from airtune.flower.placement import PLACEMENTS


def add_flower_parser(sub: argparse._SubParsersAction) -> None:
    """``airtune flower run | app`` under the main parser's subcommands."""
    fl = sub.add_parser("flower", help="run the experiment on Flower (deployment or simulation runtime)")
    fsub = fl.add_subparsers(dest="flower_command", required=True)
    run = fsub.add_parser("run", help="write the app, submit it to a SuperLink, follow the run to its end")
    run.add_argument("args", nargs="*", help="[CONFIG.yaml] [key.sub=value ...]")
    run.add_argument("--superlink", required=True, metavar="ADDRESS",
                     help="HOST:PORT of an insecure SuperLink, or a connection name of your Flower configuration")
    run.add_argument("--out", help="run directory (default runs/<name>-<timestamp>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    _common(run)
    run.add_argument("--federation-config", metavar="TEXT",
                     help="simulation runtime (Ray): passed to flwr run, e.g. 'num-supernodes=4'")
    run.add_argument("--pending-timeout", type=float, default=300.0,
                     help="seconds a run may stay pending before this gives up (default 300)")
    run.set_defaults(func=cmd_flower_run)
    app = fsub.add_parser("app", help="write the Flower app folder, for `flwr run DIR CONNECTION -c 'out=\"...\"'`")
    app.add_argument("dir", help="folder to write (must not hold files)")
    app.add_argument("args", nargs="*", help="[CONFIG.yaml] [key.sub=value ...]")
    _common(app)
    app.set_defaults(func=cmd_flower_app)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--placement", default="shard-per-node", choices=PLACEMENTS,
                   help="shard-per-node (default; a node hosts several devices) or device-per-node")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a round waits for replies (default 600)")
    p.add_argument("--quorum-timeout", type=float, default=120.0,
                   help="seconds to wait until every device has a node (default 120)")


def _require_flwr() -> None:
    if importlib.util.find_spec("flwr") is None:
        raise ConfigError("Flower is not installed; fix: pip install 'airtune[flower]'")


def _positive(ns: argparse.Namespace) -> None:
    for name in ("timeout", "quorum_timeout", "pending_timeout"):
        value = getattr(ns, name, 1.0)
        if not value > 0:
            raise ConfigError(f"--{name.replace('_', '-')} = {value:g} is not positive; fix: a number of seconds > 0")


def cmd_flower_run(ns: argparse.Namespace) -> int:
    from airtune.cli import _load
    from airtune.experiment import rundir
    from airtune.experiment.validate import preflight
    from airtune.flower.submit import FlowerRunError, Submission, check_superlink, submit_and_follow

    _require_flwr()
    _positive(ns)
    check_superlink(ns.superlink)
    if ns.resume:
        run_dir = Path(ns.resume)
        cfg = rundir.resume_config(run_dir, _load(ns.args) if ns.args else None)
    else:
        cfg = _load(ns.args)
        preflight(cfg)
        run_dir = Path(ns.out) if ns.out else rundir.default_run_dir(cfg)
        rundir.prepare(cfg, run_dir)
    sub = Submission(ns.superlink, ns.placement, ns.timeout, ns.quorum_timeout, ns.federation_config,
                     ns.pending_timeout)
    try:
        submit_and_follow(cfg, run_dir, sub, resume=bool(ns.resume))
    except FlowerRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = run_dir / rundir.SUMMARY
    print(f"done: {summary if summary.exists() else run_dir}")
    return 0


def cmd_flower_app(ns: argparse.Namespace) -> int:
    from airtune.cli import _load
    from airtune.flower.app_files import write_app

    out = Path(ns.dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"app folder '{out}' already holds files; fix: choose an empty or new folder")
    _positive(ns)
    cfg = _load(ns.args)
    write_app(out, cfg, placement=ns.placement, timeout=ns.timeout, quorum_timeout=ns.quorum_timeout)
    print(f"wrote {out}: flwr run {out} CONNECTION -c 'out=\"/abs/run/dir\"' "
          "(SuperNodes: --node-config \"airtune-devices='0-9'\")")
    return 0
