"""Optional experiment-tracking sinks: TensorBoard and MLflow mirrors of ``metrics.jsonl``.

``metrics.jsonl`` stays the source of truth; a sink receives each round's record after it has
been written there and logs its numeric fields with the round as the step. Nested dicts become
``a/b`` keys; lists, strings, booleans and missing values are skipped (per-device lists stay in
``clients.jsonl``). On ``--resume`` the rounds after the checkpoint are logged again with the
same steps (TensorBoard shows the latest value of a step; MLflow keeps both points).

Both libraries are imported only when their sink is enabled (``tracking`` section of the
config); a missing library is a one-line error naming the install command.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from airtune.errors import ConfigError

__all__ = ["MetricSink", "MLflowSink", "TensorBoardSink", "make_sinks", "numeric_scalars"]


class MetricSink(Protocol):
    def log(self, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def numeric_scalars(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite int/float fields of a record, nested dicts flattened to ``a/b``; ``round`` is the step."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(numeric_scalars(value, prefix=f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and name != "round":
            if math.isfinite(float(value)):
                out[name] = float(value)
    return out


class TensorBoardSink:
    """Scalars to ``<run dir>/tensorboard`` (``torch.utils.tensorboard.SummaryWriter``)."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError("tracking.tensorboard = true needs the tensorboard package; fix: "
                              "pip install tensorboard (or set tracking.tensorboard=false)") from exc
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, record: Mapping[str, Any]) -> None:
        step = int(record["round"])
        for key, value in numeric_scalars(record).items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflowSink:
    """One MLflow run per airtune run: the config as parameters, each round's scalars as metrics."""

    def __init__(self, experiment: str, run_name: str, tracking_uri: str | None, params: Mapping[str, Any]) -> None:
        try:
            import mlflow
        except ImportError as exc:
            raise ConfigError("tracking.mlflow = true needs the mlflow package; fix: pip install mlflow-skinny "
                              "(or set tracking.mlflow=false)") from exc
        self.mlflow = mlflow
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=run_name)
        flat = _flatten(params)
        for start in range(0, len(flat), 100):            # MLflow takes at most 100 params per call
            mlflow.log_params(dict(list(flat.items())[start:start + 100]))

    def log(self, record: Mapping[str, Any]) -> None:
        self.mlflow.log_metrics(numeric_scalars(record), step=int(record["round"]))

    def close(self) -> None:
        self.mlflow.end_run()


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:500]       # MLflow's parameter value limit
    return out


def make_sinks(tracking: Any, run_dir: Path, run_name: str, params: Mapping[str, Any]) -> list[MetricSink]:
    """The sinks the config's ``tracking`` section enables (none by default)."""
    sinks: list[MetricSink] = []
    if tracking.tensorboard:
        sinks.append(TensorBoardSink(run_dir / "tensorboard"))
    if tracking.mlflow:
        sinks.append(MLflowSink(tracking.mlflow_experiment, run_name, tracking.mlflow_tracking_uri, params))
    return sinks
