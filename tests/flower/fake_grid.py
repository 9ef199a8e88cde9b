"""A Flower ``Grid`` without processes: messages go straight to a ClientApp object in-process.

Implements the abstract methods of ``flwr.serverapp.Grid``. Each node has its own ``Context``
(its ``node_config`` and a ``state`` that persists across messages, as in deployment). A node in
``dead`` is not listed and never replies, one in ``erring`` answers train messages with an error; a handler's exception becomes an error reply, as the
SuperNode does.

``Message(...)`` reads the process's task identity, which Flower's runtime sets before it calls
a ServerApp (``superlink/runtime/run_serverapp.py``); the fake sets it the same way. That
is the one non-public Flower name used, and only here, in a test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity


class FakeGrid(Grid):
    def __init__(self, app: ClientApp, node_configs: dict[int, dict], run_config: dict) -> None:
        self.app = app
        self.contexts = {n: Context(run_id=1, node_id=n, node_config=dict(c), state=RecordDict(),
                                    run_config=dict(run_config)) for n, c in node_configs.items()}
        self.dead: set[int] = set()      # not listed, never reply
        self.erring: set[int] = set()    # reply to train messages with an error
        self.sent: list[Message] = []
        self._pending: dict[str, Message] = {}
        self._ids = itertools.count()
        self._run = None
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0  # as the runtime does

    def set_run(self, run) -> None:
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self.contexts if n not in self.dead]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            key = f"m{next(self._ids)}"
            self._pending[key] = msg
            self.sent.append(msg)
            ids.append(key)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        out = []
        for key in message_ids:
            msg = self._pending.pop(key)
            node = msg.metadata.dst_node_id
            if node in self.dead or node not in self.contexts:
                continue
            if node in self.erring and msg.metadata.message_type.startswith("train"):
                out.append(Message(Error(code=1, reason="RuntimeError: injected failure"), reply_to=msg))
                continue
            try:
                out.append(self.app(msg, self.contexts[node]))
            except Exception as exc:  # the SuperNode turns a ClientApp exception into an error reply
                out.append(Message(Error(code=1, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg))
        return out

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))
