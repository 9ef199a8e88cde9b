"""The ClientApp: a node trains its devices' tasks with one shared model per process.

The first train message of a process builds, lazily, the run's :class:`~airtune.experiment.setup.Setup`
with the runner's own builder (the same seeded base model, adapters at the same planned rank,
tokenized data and partitions as the server) and an
:class:`~airtune.training.engine.Engine` over it; later messages in the same process reuse it
(Flower's simulation runtime keeps a process per actor; the deployment runtime starts one process
per message, so there each message pays the build: shard-per-node amortises it over a shard).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from airtune.config import Config, config_hash
from airtune.flower.codec import decode_tasks, encode_updates
from airtune.flower.handshake import hello_reply
from airtune.flower.placement import node_devices
from airtune.flower.settings import AppSettings, load_app_config, read_settings
from airtune.training.engine import Engine

log = logging.getLogger("airtune")


@dataclass
class NodeRuntime:
    """What a node process keeps between messages: the config and its devices, and the engine."""

    cfg: Config
    settings: AppSettings
    devices: list[int]
    engine: Engine | None = None

    def get_engine(self) -> Engine:
        if self.engine is None:
            # the runner's own builder, so that the node's model is the server's (seed, planned rank)
            from airtune.experiment.runner import build_at_planned_rank, make_engine

            log.info("flower node: building the model and data for devices %s", self.devices)
            self.engine = make_engine(build_at_planned_rank(self.cfg))
        return self.engine


_RUNTIMES: dict[tuple[str, str, tuple], NodeRuntime] = {}


def node_runtime(app_dir: Path, context: Context) -> NodeRuntime:
    """This process's runtime for the run's config and this node's devices (built once)."""
    settings = read_settings(context.run_config, app_dir)
    cfg = load_app_config(settings)
    devices = node_devices(context.node_config, cfg.num_devices, settings.placement)
    key = (config_hash(cfg), settings.placement, tuple(devices))
    if key not in _RUNTIMES:
        _RUNTIMES[key] = NodeRuntime(cfg, settings, devices)
    return _RUNTIMES[key]


def make_client_app(app_dir: Path) -> ClientApp:
    """The ClientApp of the app in ``app_dir`` (``app_files.write_app``)."""
    app = ClientApp()

    @app.query("airtune_hello")
    def hello(msg: Message, context: Context) -> Message:
        rt = node_runtime(app_dir, context)
        return Message(hello_reply(rt.cfg, rt.devices), reply_to=msg)

    @app.train("airtune")
    def train(msg: Message, context: Context) -> Message:
        rt = node_runtime(app_dir, context)
        tasks = decode_tasks(msg.content)
        foreign = sorted({t.device for t in tasks} - set(rt.devices))
        if foreign:
            raise ValueError(f"tasks for devices {foreign}, which this node (devices {rt.devices}) does not host")
        return Message(encode_updates(rt.get_engine().run(tasks)), reply_to=msg)

    return app
