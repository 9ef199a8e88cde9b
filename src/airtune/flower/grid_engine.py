"""``GridEngine``: ``Engine.run(tasks)`` over a Flower ``Grid``.

Each round, the tasks are grouped by the node hosting their device (one message per node,
carrying all that node's tasks: one task per message under ``device-per-node``, a shard under
``shard-per-node``), sent with ``grid.send_and_receive``, and the replies decoded into
``ClientUpdate`` objects in task order. Everything else an engine does for the round loop
(``load_task`` for evaluation and checkpoints) runs on the server's own local engine.

A node that is gone, replies with an error, or does not reply within ``timeout`` seconds loses
its devices' updates for the round: they are listed in :attr:`failed` (device -> reason), which
the runner treats like an outage (not aggregated; ``run.log`` says why). The run goes on.

Chained tasks (``ClientTask.chain``: split learning with one server-side LoRA trained device
after device) must see the previous device's result, so when any task chains the messages go
one node-run at a time, in task order, and each run's first task starts from the last update.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

from airtune.flower.codec import decode_updates, encode_tasks
from airtune.training.engine import ClientTask, ClientUpdate, Engine

log = logging.getLogger("airtune")
TRAIN = "train.airtune"


@dataclass
class Traffic:
    """What this engine moved through Flower (for the payload cross-check in docs/flower.md)."""

    messages: int = 0
    replies: int = 0
    down_array_bytes: int = 0      # ArrayRecord.count_bytes() of the task messages
    up_array_bytes: int = 0        # ... of the replies
    down_json_bytes: int = 0       # the tasks' JSON (ConfigRecord) text
    up_json_bytes: int = 0
    wall_s: float = 0.0            # time inside send_and_receive


class GridEngine:
    """Trains tasks on Flower nodes; evaluation and checkpoints use ``local`` (the server's model)."""

    def __init__(self, local: Engine, grid: Grid, nodes: dict[int, int], *, timeout: float) -> None:
        self.local = local
        self.grid = grid
        self.nodes = dict(nodes)            # device -> node id (from the handshake)
        self.timeout = timeout
        self.failed: dict[int, str] = {}    # devices of the last run() whose update never came back
        self.traffic = Traffic()
        self._round = 0

    def load_task(self, task: ClientTask) -> None:
        self.local.load_task(task)

    def __getattr__(self, name: str) -> Any:   # model, partitions, ...: the local engine's
        return getattr(self.local, name)

    def run(self, tasks: list[ClientTask]) -> list[ClientUpdate]:
        self.failed = {}
        self._round += 1
        alive = set(self.grid.get_node_ids())
        groups: list[tuple[int, list[int]]] = []      # (node, task indices), consecutive
        for i, t in enumerate(tasks):
            node = self.nodes.get(t.device)
            if node is None or node not in alive:
                self.failed[t.device] = f"node {node} of device {t.device} is not connected"
                continue
            if groups and groups[-1][0] == node:
                groups[-1][1].append(i)
            else:
                groups.append((node, [i]))
        results: dict[int, ClientUpdate] = {}
        if any(t.chain for t in tasks):
            last: ClientUpdate | None = None
            for node, idx in groups:
                first = tasks[idx[0]]
                if first.chain and last is not None:
                    first = replace(first, state={**first.state, **{k: last.state[k] for k in first.chain}})
                got = self._exchange({node: [first, *(tasks[i] for i in idx[1:])]})
                for i, up in zip(idx, got.get(node, [])):
                    results[i] = up
                    last = up
        else:
            per_node: dict[int, list[int]] = {}
            for node, idx in groups:
                per_node.setdefault(node, []).extend(idx)
            got = self._exchange({n: [tasks[i] for i in idx] for n, idx in per_node.items()})
            for node, idx in per_node.items():
                results.update(zip(idx, got.get(node, [])))
        return [results[i] for i in range(len(tasks)) if i in results]

    def _exchange(self, by_node: dict[int, list[ClientTask]]) -> dict[int, list[ClientUpdate]]:
        """One message per node, its replies decoded; failures recorded in :attr:`failed`."""
        msgs: list[Message] = []
        for node, ts in by_node.items():
            content = encode_tasks(ts)
            self.traffic.down_array_bytes += content.array_records["arrays"].count_bytes()
            self.traffic.down_json_bytes += len(str(content.config_records["items"]["json"]))
            msgs.append(Message(content, dst_node_id=node, message_type=TRAIN, group_id=str(self._round)))
        t0 = time.perf_counter()
        replies = list(self.grid.send_and_receive(msgs, timeout=self.timeout))
        # the grid sets each message's id when it pushes it; a reply the SuperLink writes itself (the
        # node is offline) names the message it answers but comes from the SuperLink, not the node
        sent = {m.metadata.message_id: m.metadata.dst_node_id for m in msgs if m.metadata.message_id}
        self.traffic.wall_s += time.perf_counter() - t0
        self.traffic.messages += len(msgs)
        self.traffic.replies += len(replies)
        out: dict[int, list[ClientUpdate]] = {}
        for reply in replies:
            node = sent.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
            if node not in by_node or node in out:
                continue
            if reply.has_error():
                self._fail(by_node[node], f"node {node} replied with an error: {reply.error.reason}")
                continue
            try:
                ups = decode_updates(reply.content)
            except Exception as exc:  # a malformed reply is this node's failure, not the run's
                self._fail(by_node[node], f"node {node} sent an unreadable reply ({exc})")
                continue
            if [u.device for u in ups] != [t.device for t in by_node[node]]:
                self._fail(by_node[node], f"node {node} replied for devices {[u.device for u in ups]}")
                continue
            self.traffic.up_array_bytes += reply.content.array_records["arrays"].count_bytes()
            self.traffic.up_json_bytes += len(str(reply.content.config_records["items"]["json"]))
            out[node] = ups
        for node, ts in by_node.items():
            if node not in out and not any(t.device in self.failed for t in ts):
                self._fail(ts, f"node {node} did not reply within timeout = {self.timeout:g} s")
        return out

    def _fail(self, tasks: list[ClientTask], reason: str) -> None:
        log.warning("flower: %s; devices %s lost this round", reason, sorted({t.device for t in tasks}))
        for t in tasks:
            self.failed[t.device] = reason
