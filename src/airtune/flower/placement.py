"""Which devices a node hosts: read from its ``node_config`` (no flwr import).

Two placement modes (run-config key ``placement``):

``shard-per-node`` (scale-out simulation)
    A node hosts a shard of devices, one message per round carries all its scheduled tasks.
    ``--node-config "airtune-devices='0-9,12'"`` names them; otherwise Flower's
    ``partition-id`` / ``num-partitions`` (set by the simulation runtime, or by hand) take
    ``range(K)[partition_id::num_partitions]``.
``device-per-node`` (real deployment)
    A node is one device: ``--node-config "airtune-device=7"``, else ``partition-id``
    (then ``num-partitions`` must equal ``num_devices``).
"""

from __future__ import annotations

from collections.abc import Mapping

from airtune.errors import ConfigError

PLACEMENTS = ("shard-per-node", "device-per-node")


def check_placement(placement: str) -> str:
    if placement not in PLACEMENTS:
        raise ConfigError(f"placement = {placement!r} is not a placement mode; fix: one of {', '.join(PLACEMENTS)}")
    return placement


def parse_device_list(text: str, num_devices: int) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]`` (inclusive ranges), checked against ``num_devices``."""
    out: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ConfigError(f"node config airtune-devices = {text!r} is not a device list; "
                              "fix: e.g. airtune-devices='0-9,12'") from None
        if not 0 <= a <= b < num_devices:
            raise ConfigError(f"node config airtune-devices = {text!r} names devices outside 0..{num_devices - 1}; "
                              f"fix: the config has num_devices = {num_devices}")
        out.extend(range(a, b + 1))
    if not out:
        raise ConfigError(f"node config airtune-devices = {text!r} names no device; fix: e.g. airtune-devices='0-9'")
    return sorted(set(out))


def node_devices(node_config: Mapping[str, object], num_devices: int, placement: str) -> list[int]:
    """The devices a node with this ``node_config`` hosts under ``placement``."""
    check_placement(placement)
    if placement == "device-per-node":
        if "airtune-device" in node_config:
            return parse_device_list(str(node_config["airtune-device"]), num_devices)[:1]
        pid, n = _partition(node_config, "airtune-device=K")
        if n != num_devices:
            raise ConfigError(f"node config num-partitions = {n} but num_devices = {num_devices} under placement "
                              "device-per-node; fix: one node per device, or placement=shard-per-node")
        return [pid]
    if "airtune-devices" in node_config:
        return parse_device_list(str(node_config["airtune-devices"]), num_devices)
    pid, n = _partition(node_config, "airtune-devices='0-9'")
    return list(range(num_devices))[pid::n]


def _partition(node_config: Mapping[str, object], example: str) -> tuple[int, int]:
    try:
        pid, n = int(node_config["partition-id"]), int(node_config["num-partitions"])  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"node config {dict(node_config)!r} names no devices; fix: start the SuperNode with "
                          f"--node-config \"{example}\" or \"partition-id=I num-partitions=N\"") from None
    if not 0 <= pid < n:
        raise ConfigError(f"node config partition-id = {pid} is outside 0..{n - 1}; fix: 0 <= partition-id < "
                          "num-partitions")
    return pid, n


def device_map(node_devices_by_id: Mapping[int, list[int]], num_devices: int) -> dict[int, int]:
    """``device -> node id``; refuses a device hosted by two nodes. Missing devices are absent."""
    out: dict[int, int] = {}
    for node, devs in sorted(node_devices_by_id.items()):
        for d in devs:
            if d in out:
                raise ConfigError(f"device {d} is hosted by nodes {out[d]} and {node}; fix: give each SuperNode "
                                  "disjoint airtune-devices / partition ids")
            out[d] = node
    return out
