"""The handshake: ask every node which devices it hosts, refuse nodes running another airtune or
config, and wait (bounded) until every device has a node.

Server: ``query.airtune_hello`` to each connected node. Node (``client_app``): replies its
devices (from its ``node_config``, ``placement.node_devices``), its airtune version and the hash
of the config it loaded. A mismatch or a node error stops the run with one line naming the node;
a device without a node after ``quorum-timeout`` seconds stops it too (nothing hangs silently).
"""

from __future__ import annotations

import logging
import time

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from airtune import __version__
from airtune.config import Config, config_hash
from airtune.errors import ConfigError
from airtune.flower.placement import device_map
from airtune.flower.settings import AppSettings

log = logging.getLogger("airtune")
HELLO = "query.airtune_hello"
RECORD = "hello"


def hello_reply(cfg: Config, devices: list[int]) -> RecordDict:
    """What a node answers (``client_app``)."""
    return RecordDict({RECORD: ConfigRecord({"devices": [int(d) for d in devices], "airtune-version": __version__,
                                             "config-hash": config_hash(cfg)})})


def handshake(grid: Grid, cfg: Config, settings: AppSettings, *, poll_s: float = 1.0) -> dict[int, int]:
    """``device -> node id`` once every device of ``cfg`` has a node; raises :class:`ConfigError`."""
    deadline = time.monotonic() + settings.quorum_timeout
    want = config_hash(cfg)
    hosted: dict[int, list[int]] = {}
    asked: set[int] = set()
    while True:
        new = [n for n in grid.get_node_ids() if n not in asked]
        if new:
            asked.update(new)
            msgs = [Message(RecordDict({RECORD: ConfigRecord({"airtune-version": __version__, "config-hash": want})}),
                            dst_node_id=n, message_type=HELLO, group_id="hello") for n in new]
            left = max(1.0, deadline - time.monotonic())
            for reply in grid.send_and_receive(msgs, timeout=left):
                node = reply.metadata.src_node_id
                hosted[node] = _check_reply(node, reply, want)
                log.info("flower node %d hosts devices %s", node, hosted[node])
        devices = device_map(hosted, cfg.num_devices)
        missing = [d for d in range(cfg.num_devices) if d not in devices]
        if not missing:
            return devices
        if time.monotonic() >= deadline:
            silent = sorted(asked - hosted.keys())
            raise ConfigError(
                f"quorum: devices {_ranges(missing)} have no Flower node after quorum-timeout = "
                f"{settings.quorum_timeout:g} s ({len(hosted)} nodes answered"
                f"{f', {len(silent)} did not' if silent else ''}); fix: start SuperNodes with --node-config "
                "\"airtune-devices='A-B'\" (shard-per-node) or \"airtune-device=K\" covering every device, "
                "or raise -c 'quorum-timeout=...'")
        time.sleep(poll_s)


def _check_reply(node: int, reply: Message, want: str) -> list[int]:
    if reply.has_error():
        raise ConfigError(f"flower node {node} refused the handshake: {reply.error.reason}; fix: see that "
                          "SuperNode's log (its --node-config)")
    rec = reply.content.config_records.get(RECORD)
    if rec is None:
        raise ConfigError(f"flower node {node} answered the handshake without a '{RECORD}' record; fix: run "
                          "the app written by `airtune flower app`")
    version, got = str(rec.get("airtune-version")), str(rec.get("config-hash"))
    if version != __version__ or got != want:
        raise ConfigError(f"flower node {node} runs airtune {version} with config hash {got}, the server airtune "
                          f"{__version__} with {want}; fix: install the same airtune on every machine and run "
                          "the same app")
    return [int(d) for d in rec.get("devices", [])]  # type: ignore[union-attr]


def _ranges(devices: list[int]) -> str:
    out, start = [], None
    for i, d in enumerate(devices):
        if start is None:
            start = d
        if i + 1 == len(devices) or devices[i + 1] != d + 1:
            out.append(f"{start}" if start == d else f"{start}-{d}")
            start = None
    return ",".join(out)
