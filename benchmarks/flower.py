#!/usr/bin/env python
"""Benchmark: airtune on Flower against a FlowerTune-style Flower app and the in-process engine.

Measures, in one run, on this machine, with the same config, seed and devices (issue 16):

(a) ``shard``: ``airtune flower run`` in shard mode, 2 SuperNodes each hosting half the devices;
(b) ``device``: ``airtune flower run --placement device-per-node``, one SuperNode per device;
(c) ``flowertune``: a FlowerTune-style Flower app (written by this script into a temp folder, run
    with ``flwr run``): one SuperNode per device; every ``train`` call rebuilds the PEFT model
    (``airtune.models.zoo.load_classifier`` + ``peft.get_peft_model`` + ``set_peft_model_state_dict``),
    trains with ``airtune.training.local.train_steps`` and returns ``get_peft_model_state_dict``;
    the ServerApp aggregates with Flower's own ``FedAvg`` (no evaluation);
(d) ``inprocess``: ``airtune run`` (the in-process engine).

Reported per side: device updates/s (updates returned to the server / the wall time of the rounds),
wall time per round, Flower's overhead per message (round wall minus the in-process round wall,
per message; for (c) also round wall minus the train time its ClientApps report), and the peak
resident memory (psutil RSS, summed over each SuperNode's process group: the SuperNode, its
SuperExec and the ClientApp processes it starts), sampled every 0.5 s. Ratios against (c) and (d).

Real processes: a ``flower-superlink --insecure --disable-runtime-dependency-installation`` on a
free 127.0.0.1 port per Flower side, with its own ``FLWR_HOME`` under a temp folder, telemetry and
update checks off; every process is started in a session of its own and killed by process group
at the end of its side, also on failure. Timings depend on the machine's load (``uptime`` is
recorded before and after); they are never asserted anywhere.

Usage (from the repository root)::

    AIRTUNE_DATA_DIR=/path/to/glue .venv/bin/python benchmarks/flower.py \\
        --json docs/results/flower_bench.json

Flags: ``--sides`` (comma list of inprocess,shard,device,flowertune; default all, in that order),
``--config`` (default configs/default.yaml), ``--keep DIR`` (keep logs and run folders there),
extra ``key=value`` overrides after the defaults of ``DEFAULT_OVERRIDES``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OVERRIDES = ["rounds=2", "num_devices=4", "devices_per_round=4", "data.train_subset=800",
                     "data.test_subset=100", "train.local_steps=5", "train.batch_size=32", "eval_every=2",
                     "allocation.name=equal"]   # batch and allocator pinned: the defaults until 2026-12-04
SIDES = ("inprocess", "shard", "device", "flowertune")

# --------------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


class RssSampler:
    """Peak RSS (bytes) summed over the processes of each watched process group, every ``period`` s."""

    def __init__(self, period: float = 0.5) -> None:
        self.period = period
        self.groups: dict[str, int] = {}      # name -> pgid
        self.peak: dict[str, int] = {}
        self.peak_procs: dict[str, int] = {}  # most processes seen at once in the group
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def watch(self, name: str, pgid: int) -> None:
        self.groups[name] = pgid  # a name reused by a later side starts again from 0
        self.peak[name] = 0
        self.peak_procs[name] = 0

    def sample(self) -> None:
        by_group: dict[int, list[int]] = {}
        for p in psutil.process_iter(["pid"]):
            try:
                by_group.setdefault(os.getpgid(p.pid), []).append(p.memory_info().rss)
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        for name, pgid in list(self.groups.items()):
            rss = by_group.get(pgid, [])
            self.peak[name] = max(self.peak[name], sum(rss))
            self.peak_procs[name] = max(self.peak_procs[name], len(rss))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Cluster:
    """One SuperLink and N SuperNodes on free 127.0.0.1 ports with an isolated ``FLWR_HOME``
    (as ``tests/flower/cluster.py``); killed by process group on exit, also on failure."""

    def __init__(self, root: Path, node_configs: list[str], sampler: RssSampler) -> None:
        self.root = root
        self.node_configs = node_configs
        self.sampler = sampler
        self.address = f"127.0.0.1:{free_port()}"
        self.env = {**os.environ, "FLWR_HOME": str(root / "flwr-home"), "FLWR_TELEMETRY_ENABLED": "0",
                    "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1",
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        self.sampler.watch(name, proc.pid)  # a new session: its pgid is its pid
        return proc

    def __enter__(self) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            port = self.address.rsplit(":", 1)[1]
            self.start("superlink", [str(BIN / "flower-superlink"), "--insecure",
                                     "--disable-runtime-dependency-installation", "--host", "127.0.0.1",
                                     "--port", port])
            self._wait_health()
            for i, nc in enumerate(self.node_configs):
                self.start(f"supernode{i}", [str(BIN / "flower-supernode"), "--insecure", "--superlink",
                                             self.address, "--port", str(free_port()), "--node-config", nc])
        except BaseException:
            self.close()
            raise
        return self

    def _wait_health(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs["superlink"].poll() is not None:
                raise RuntimeError(f"flower-superlink exited; see {self.root / 'superlink.log'}")
            try:
                with urllib.request.urlopen(f"http://{self.address}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"flower-superlink not healthy after {timeout} s")

    def serverapp_pids(self) -> list[int]:
        """``flwr-serverapp`` processes of this cluster (the SuperLink starts them in a session of their own)."""
        want = f"FLWR_HOME={self.env['FLWR_HOME']}".encode()
        pids = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    if b"flwr-serverapp" in (p / "cmdline").read_bytes() and \
                            want in (p / "environ").read_bytes().split(b"\0"):
                        pids.append(int(p.name))
                except OSError:
                    continue
        return pids

    def close(self) -> None:
        for pid in self.serverapp_pids():  # own ServerApp only (found by this cluster's FLWR_HOME)
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait(timeout=15)
                    except (ProcessLookupError, subprocess.TimeoutExpired):
                        pass

    def __exit__(self, *exc) -> None:
        self.close()


def run_logged(cmd: list[str], log: Path, env: dict[str, str], sampler: RssSampler | None = None,
               name: str | None = None, timeout: float = 1800) -> tuple[int, float]:
    """Run ``cmd`` in a session of its own (RSS watched as ``name``); (exit code, wall seconds)."""
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
        if sampler is not None and name is not None:
            sampler.watch(name, proc.pid)
        try:
            rc = proc.wait(timeout=timeout)
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
            raise
    return rc, time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# the FlowerTune-style app (c)

FT_PYPROJECT = '''[project]
name = "flowertune-style"
version = "0.1.0"
description = "FlowerTune-style baseline of benchmarks/flower.py: PEFT model rebuilt per train call, FedAvg"
license = "Apache-2.0"
dependencies = ["flwr>=1.42,<1.43"]

[tool.flwr.app]
publisher = "airtune-bench"

[tool.flwr.app.components]
serverapp = "ftstyle.server_app:app"
clientapp = "ftstyle.client_app:app"

[tool.flwr.app.config]
config = {config}
result = {result}
'''

FT_COMMON = '''"""Shared pieces of the FlowerTune-style app (written by benchmarks/flower.py)."""

import time


def peft_model(cfg, num_classes=2):
    """The pre-trained base (as airtune loads it) wrapped by peft.get_peft_model: LoRA + the head."""
    from peft import LoraConfig, TaskType, get_peft_model

    from airtune.models.zoo import load_classifier, resolve_model

    spec = resolve_model(cfg.model.name)
    base = load_classifier(spec, num_classes)
    present = {n.split(".")[-1] for n, _ in base.named_modules()}
    head = [h for h in spec.head_modules if h.split(".")[-1] in present]
    lcfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora.rank, lora_alpha=cfg.lora.alpha,
                      lora_dropout=cfg.lora.dropout, target_modules=list(cfg.lora.target_modules),
                      modules_to_save=head)
    return get_peft_model(base, lcfg), spec


def now():
    return time.perf_counter()
'''

FT_CLIENT = '''"""FlowerTune-style ClientApp: every train call rebuilds the PEFT model (written by benchmarks/flower.py)."""

import time

T_IMPORT0 = time.perf_counter()

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402

from ftstyle.common import peft_model  # noqa: E402

IMPORT_S = time.perf_counter() - T_IMPORT0
app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from airtune.config import load_config
    from airtune.experiment.seeds import int_seed
    from airtune.experiment.setup import build_data, build_partitions
    from airtune.lora.adapters import trainable_params
    from airtune.models.zoo import load_tokenizer, resolve_model
    from airtune.training.engine import device_batches
    from airtune.training.local import OptimConfig, make_optimizer, train_steps
    from airtune.training.precision import resolve_precision

    t0 = time.perf_counter()
    cfg = load_config(context.run_config["config"])
    torch.set_num_threads(cfg.train.num_threads)
    device = int(context.node_config["partition-id"])
    rnd = int(msg.content["config"]["server-round"])
    spec = resolve_model(cfg.model.name)
    train_set, _, num_classes = build_data(cfg, load_tokenizer(spec), spec)  # the client's data
    parts, _ = build_partitions(cfg, train_set.labels.numpy(), num_classes)
    idx = parts[device]
    t1 = time.perf_counter()
    model, spec = peft_model(cfg, num_classes)            # the model, rebuilt in every call
    state = msg.content["arrays"].to_torch_state_dict()
    res = set_peft_model_state_dict(model, state)
    if res.unexpected_keys:
        raise KeyError(f"unexpected keys {res.unexpected_keys[:3]}")
    t2 = time.perf_counter()
    t = cfg.train
    optim = OptimConfig(lr=t.lr, head_lr=t.head_lr, weight_decay=t.weight_decay, optimizer=t.optimizer,
                        max_grad_norm=t.max_grad_norm, precision=resolve_precision(cfg.model.precision, torch.device("cpu"))[0],
                        proximal_mu=t.proximal_mu)
    opt = make_optimizer(trainable_params(model), optim, lambda k: ".lora_A." not in k and ".lora_B." not in k)
    seed = int_seed(cfg.seed, "batches", rnd, device)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    losses = train_steps(model, device_batches(train_set, idx, t.local_steps, t.batch_size, rng), opt, optim)
    t3 = time.perf_counter()
    out = {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    t4 = time.perf_counter()
    proc = psutil.Process()
    metrics = MetricRecord({
        "num-examples": int(len(idx)), "train-loss": float(np.mean(losses)),
        "import-s": IMPORT_S, "data-s": t1 - t0, "build-s": t2 - t1, "train-s": t3 - t2, "export-s": t4 - t3,
        "call-s": t4 - t0, "process-age-s": time.time() - proc.create_time(), "rss-bytes": proc.memory_info().rss,
    })
    return Message(content=RecordDict({"arrays": ArrayRecord(out), "metrics": metrics}), reply_to=msg)
'''

FT_SERVER = '''"""FlowerTune-style ServerApp: Flower's FedAvg, no evaluation (written by benchmarks/flower.py)."""

import json
import time
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from ftstyle.common import peft_model

app = ServerApp()


class TimedFedAvg(FedAvg):
    """FedAvg that notes when each round's train messages go out and when their replies are aggregated."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.t_start = {}
        self.t_end = {}
        self.replies = {}

    def configure_train(self, server_round, arrays, config, grid):
        self.t_start[server_round] = time.perf_counter()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        self.replies[server_round] = [dict(r.content["metrics"]) for r in replies if r.has_content()]
        out = super().aggregate_train(server_round, replies)
        self.t_end[server_round] = time.perf_counter()
        return out


@app.main()
def main(grid: Grid, context: Context) -> None:
    from peft import get_peft_model_state_dict

    from airtune.config import load_config

    cfg = load_config(context.run_config["config"])
    torch.manual_seed(cfg.seed)
    model, _ = peft_model(cfg)
    arrays = ArrayRecord({k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(model).items()})
    n = cfg.num_devices
    strategy = TimedFedAvg(fraction_train=cfg.devices_per_round / n, fraction_evaluate=0.0,
                           min_train_nodes=cfg.devices_per_round, min_available_nodes=n)
    t0 = time.perf_counter()
    strategy.start(grid=grid, initial_arrays=arrays, num_rounds=cfg.rounds, train_config=ConfigRecord({}))
    total = time.perf_counter() - t0
    rounds = [{"round": r, "wall_s": strategy.t_end[r] - strategy.t_start[r], "replies": strategy.replies[r]}
              for r in sorted(strategy.t_end)]
    Path(context.run_config["result"]).write_text(json.dumps({"total_s": total, "rounds": rounds}, indent=2))
'''


def write_flowertune_app(app_dir: Path, config_path: Path, result_path: Path) -> Path:
    pkg = app_dir / "ftstyle"
    pkg.mkdir(parents=True, exist_ok=True)
    (app_dir / "pyproject.toml").write_text(FT_PYPROJECT.format(config=json.dumps(str(config_path)),
                                                                result=json.dumps(str(result_path))))
    (pkg / "__init__.py").write_text('"""FlowerTune-style baseline app."""\n')
    (pkg / "common.py").write_text(FT_COMMON)
    (pkg / "client_app.py").write_text(FT_CLIENT)
    (pkg / "server_app.py").write_text(FT_SERVER)
    return app_dir


# --------------------------------------------------------------------------------------------
# the four sides


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def airtune_side(name: str, work: Path, config: str, overrides: list[str], sampler: RssSampler,
                 node_configs: list[str] | None, placement: str | None) -> dict[str, Any]:
    """(a), (b) through ``airtune flower run``; (d) ``airtune run`` when ``node_configs`` is None."""
    side = work / name
    side.mkdir(parents=True)
    run_dir = side / "run"
    res: dict[str, Any] = {"side": name}
    if node_configs is None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = [str(BIN / "airtune"), "run", config, *overrides, "--out", str(run_dir)]
        res["command"] = " ".join(cmd[1:])
        rc, wall = run_logged(cmd, side / "cli.log", env, sampler, f"{name}:airtune-run")
        nodes: list[str] = []
    else:
        with Cluster(side, node_configs, sampler) as c:
            cmd = [str(BIN / "airtune"), "flower", "run", config, *overrides, "--superlink", c.address,
                   "--out", str(run_dir), *(["--placement", placement] if placement else [])]
            res["command"] = " ".join(cmd[1:])
            rc, wall = run_logged(cmd, side / "cli.log", c.env)
            nodes = [n for n in c.procs if n.startswith("supernode")]
            res["rss_peak_bytes"] = {n: sampler.peak[n] for n in c.procs}
            res["procs_peak"] = {n: sampler.peak_procs[n] for n in c.procs}
        flower = run_dir / "flower.json"
        res["flower"] = json.loads(flower.read_text()) if flower.exists() else None
    if node_configs is None:
        res["rss_peak_bytes"] = {f"{name}:airtune-run": sampler.peak[f"{name}:airtune-run"]}
    res["rc"], res["cli_wall_s"] = rc, wall
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    log = (run_dir / "run.log").read_text(errors="replace") if (run_dir / "run.log").exists() else ""
    failed_rounds = {int(line.split("round ", 1)[1].split(":", 1)[0]) for line in log.splitlines()
                     if ": no update from devices" in line}
    res["flower_failed_rounds"] = sorted(failed_rounds)
    res["rounds"] = [{"round": m["round"], "wall_s": m["wall_time_s"], "delivered": len(m["delivered"]),
                      "selected": len(m["selected"]),
                      "trained": len(m["delivered"]) if m["round"] in failed_rounds else len(m["selected"]),
                      "accuracy": m.get("accuracy"), "train_loss": m.get("train_loss")} for m in metrics]
    res["nodes"] = len(nodes)
    if rc != 0 or not metrics:
        res["error"] = (side / "cli.log").read_text(errors="replace")[-1500:]
    return res


def flowertune_side(work: Path, cfg, sampler: RssSampler) -> dict[str, Any]:
    """(c): the FlowerTune-style app, one SuperNode per device, submitted with ``flwr run``."""
    from airtune.config import dump_resolved
    from airtune.flower.submit import Submission, connection, flwr_executable, follow

    side = work / "flowertune"
    side.mkdir(parents=True)
    config_path = dump_resolved(cfg, side / "airtune.yaml")
    result_path = side / "result.json"
    app = write_flowertune_app(side / "app", config_path.resolve(), result_path.resolve())
    n = cfg.num_devices
    res: dict[str, Any] = {"side": "flowertune"}
    with Cluster(side, [f"partition-id={k} num-partitions={n}" for k in range(n)], sampler) as c:
        conn, env = connection(c.address, side / "cli-home")
        cmd = [flwr_executable(), "run", str(app), conn, "--format", "json"]
        res["command"] = f"flwr run {app} {conn} --format json"
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        text = proc.stdout.strip()
        try:
            sub = json.loads(text[text.find("{"):])
        except ValueError:
            sub = {"success": False, "error-message": (text or proc.stderr)[-800:]}
        run_id = sub.get("run-id")
        if not sub.get("success") or not run_id:
            res["error"] = str(sub)[-1500:]
            return res
        try:
            run = follow(str(run_id), conn, env, side, Submission(c.address), echo=lambda s: print("  " + s))
            res["status"] = run.get("status")
            res["network_traffic"] = {k: run.get(k) for k in run if "traffic" in k or "bytes" in k}
        except Exception as exc:  # noqa: BLE001 - reported, the other sides still count
            res["error"] = str(exc)[-1500:]
        res["cli_wall_s"] = time.perf_counter() - t0
        res["rss_peak_bytes"] = {name: sampler.peak[name] for name in c.procs}
        res["procs_peak"] = {name: sampler.peak_procs[name] for name in c.procs}
        res["nodes"] = n
    if result_path.exists():
        out = json.loads(result_path.read_text())
        res["serverapp_total_s"] = out["total_s"]
        res["rounds"] = [{"round": r["round"], "wall_s": r["wall_s"], "delivered": len(r["replies"]),
                          "trained": len(r["replies"]), "selected": cfg.devices_per_round,
                          "train_loss": (sum(float(m["train-loss"]) for m in r["replies"]) / len(r["replies"])
                                         if r["replies"] else None),
                          "replies": r["replies"]} for r in out["rounds"]]
    return res


# --------------------------------------------------------------------------------------------
# summary


def summarize(res: dict[str, Any], in_round_s: float | None, in_round0_s: float | None) -> dict[str, Any]:
    rounds = res.get("rounds") or []
    if not rounds:
        return {}
    wall = sum(r["wall_s"] for r in rounds)
    # device updates trained and returned to the server (an outage drops an upload after training,
    # so it counts; a Flower failure -- no reply -- does not)
    updates = sum(r["trained"] for r in rounds)
    messages = sum(r["selected"] for r in rounds) if res["side"] in ("device", "flowertune") else \
        len(rounds) * max(res.get("nodes", 0), 1)
    if res["side"] == "inprocess":
        messages = 0
    s = {"rounds": len(rounds), "round_wall_s": [r["wall_s"] for r in rounds], "wall_s": wall,
         "wall_per_round_s": wall / len(rounds), "device_updates": updates,
         "device_updates_per_s": updates / wall if wall > 0 else None, "train_messages": messages,
         # round 0 has no evaluation on any side (eval_every=2): the like-for-like round
         "round0_wall_s": rounds[0]["wall_s"], "round0_device_updates_per_s": rounds[0]["trained"] / rounds[0]["wall_s"]}
    if res.get("rss_peak_bytes"):
        nodes = {k: v for k, v in res["rss_peak_bytes"].items() if k.startswith("supernode")}
        s["rss_peak_per_node_bytes"] = nodes or res["rss_peak_bytes"]
        vals = list(s["rss_peak_per_node_bytes"].values())
        s["rss_peak_node_mean_bytes"] = sum(vals) / len(vals)
        s["rss_peak_nodes_total_bytes"] = sum(vals)
    if messages and in_round_s is not None:
        s["overhead_vs_inprocess_per_message_s"] = (wall - in_round_s * len(rounds)) / messages
    if messages and in_round0_s is not None:
        s["round0_overhead_vs_inprocess_per_message_s"] = (rounds[0]["wall_s"] - in_round0_s) / (messages / len(rounds))
    replies = [m for r in rounds for m in r.get("replies", [])]
    if replies:
        for key in ("import-s", "build-s", "data-s", "train-s", "export-s", "call-s", "process-age-s"):
            s[f"client_{key.replace('-', '_')}_mean"] = sum(float(m[key]) for m in replies) / len(replies)
        # the nodes train concurrently: per round, the wall beyond the slowest node's reported
        # train time (train_steps only), then shared over that round's messages
        beyond = [r["wall_s"] - max(float(m["train-s"]) for m in r["replies"]) for r in rounds if r.get("replies")]
        s["overhead_vs_slowest_reported_train_per_round_s"] = sum(beyond) / len(beyond)
        s["overhead_vs_slowest_reported_train_per_message_s"] = sum(beyond) / messages
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("overrides", nargs="*", help="extra key=value config overrides")
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--sides", default=",".join(SIDES))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--keep", type=Path, default=None, help="keep logs and run folders in this folder")
    args = p.parse_args(argv)
    sides = [s for s in args.sides.split(",") if s]
    bad = [s for s in sides if s not in SIDES]
    if bad:
        p.error(f"unknown sides {bad}; known: {SIDES}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from airtune.config import load_config

    overrides = [*DEFAULT_OVERRIDES, *args.overrides]
    cfg = load_config(args.config, overrides)
    n = cfg.num_devices
    half = (n + 1) // 2
    shard_nodes = [f"airtune-devices='0-{half - 1}'", f"airtune-devices='{half}-{n - 1}'"]
    device_nodes = [f"airtune-device={k}" for k in range(n)]

    work = Path(tempfile.mkdtemp(prefix="airtune-flower-bench-"))
    result: dict[str, Any] = {
        "benchmark": "flower",
        "command": " ".join(["benchmarks/flower.py", *(sys.argv[1:] if argv is None else argv)]),
        "config": args.config, "overrides": overrides,
        "machine": {"cpu_model": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
                    "uptime_before": uptime(), "python": platform.python_version(),
                    "flwr": __import__("flwr").__version__, "torch": __import__("torch").__version__,
                    "peft": __import__("peft").__version__},
        "sides": {},
    }
    try:
        with open("/proc/cpuinfo") as fh:
            result["machine"]["cpu_model"] = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), result["machine"]["cpu_model"])
    except OSError:
        pass
    print(f"benchmark in {work}; {result['machine']['uptime_before']}", flush=True)
    t_all = time.perf_counter()
    try:
        with RssSampler() as sampler:
            for side in sides:
                print(f"[{time.strftime('%H:%M:%S')}] {side} ...", flush=True)
                t0 = time.perf_counter()
                try:
                    if side == "inprocess":
                        res = airtune_side(side, work, args.config, overrides, sampler, None, None)
                    elif side == "shard":
                        res = airtune_side(side, work, args.config, overrides, sampler, shard_nodes, None)
                    elif side == "device":
                        res = airtune_side(side, work, args.config, overrides, sampler, device_nodes,
                                           "device-per-node")
                    else:
                        res = flowertune_side(work, cfg, sampler)
                except Exception as exc:  # noqa: BLE001 - one failed side does not lose the others
                    res = {"side": side, "error": f"{type(exc).__name__}: {exc}"}
                res["side_wall_s"] = time.perf_counter() - t0
                result["sides"][side] = res
                print(f"  {side}: {res.get('side_wall_s'):.1f} s" + (f"; ERROR {res['error'][-300:]}"
                                                                     if res.get("error") else ""), flush=True)
    finally:
        result["machine"]["uptime_after"] = uptime()
        result["total_wall_s"] = time.perf_counter() - t_all
        inproc = result["sides"].get("inprocess", {})
        in_rounds = inproc.get("rounds") or []
        in_round_s = sum(r["wall_s"] for r in in_rounds) / len(in_rounds) if in_rounds else None
        in_round0_s = in_rounds[0]["wall_s"] if in_rounds else None
        result["summary"] = {k: summarize(v, in_round_s, in_round0_s) for k, v in result["sides"].items()}
        sm = result["summary"]

        def ratio(a: str, b: str, key: str) -> float | None:
            x, y = sm.get(a, {}).get(key), sm.get(b, {}).get(key)
            return x / y if x and y else None

        result["ratios"] = {
            "shard_over_flowertune_updates_per_s": ratio("shard", "flowertune", "device_updates_per_s"),
            "device_over_flowertune_updates_per_s": ratio("device", "flowertune", "device_updates_per_s"),
            "inprocess_over_shard_updates_per_s": ratio("inprocess", "shard", "device_updates_per_s"),
            "inprocess_over_device_updates_per_s": ratio("inprocess", "device", "device_updates_per_s"),
            "shard_over_device_updates_per_s": ratio("shard", "device", "device_updates_per_s"),
            "shard_node_rss_over_device_node_rss": ratio("shard", "device", "rss_peak_node_mean_bytes"),
            "shard_node_rss_over_flowertune_node_rss": ratio("shard", "flowertune", "rss_peak_node_mean_bytes"),
        }
        r = result["ratios"]
        result["targets"] = {
            "shard_at_least_3x_flowertune": None if r["shard_over_flowertune_updates_per_s"] is None
            else r["shard_over_flowertune_updates_per_s"] >= 3.0,
            "shard_within_1.5x_of_inprocess": None if r["inprocess_over_shard_updates_per_s"] is None
            else r["inprocess_over_shard_updates_per_s"] <= 1.5,
        }
        if args.keep is not None:
            shutil.copytree(work, args.keep, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("checkpoint*", "flwr-home", "cli-home", "home"))
        shutil.rmtree(work, ignore_errors=True)
        text = json.dumps(result, indent=2, default=str) + "\n"
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text)
            print(f"wrote {args.json}")
    for side, s in result["summary"].items():
        if s:
            print(f"{side:>10}: {s['device_updates_per_s']:.4f} updates/s, {s['wall_per_round_s']:.1f} s/round, "
                  f"RSS/node {s.get('rss_peak_node_mean_bytes', 0) / 2**20:.0f} MiB")
    print(json.dumps(result["ratios"], indent=2))
    print(json.dumps(result["targets"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
