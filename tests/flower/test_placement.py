"""Which devices a node hosts (airtune.flower.placement; no flwr needed)."""

from __future__ import annotations

import pytest

from airtune.errors import ConfigError
from airtune.flower.placement import device_map, node_devices, parse_device_list


def test_device_lists_and_partitions():
    assert parse_device_list("0-3,7", 10) == [0, 1, 2, 3, 7]
    assert node_devices({"airtune-devices": "2-4"}, 10, "shard-per-node") == [2, 3, 4]
    assert node_devices({"partition-id": 1, "num-partitions": 3}, 10, "shard-per-node") == [1, 4, 7]
    assert node_devices({"airtune-device": 7}, 10, "device-per-node") == [7]
    assert node_devices({"partition-id": 3, "num-partitions": 10}, 10, "device-per-node") == [3]


@pytest.mark.parametrize("node_config, placement, needle", [
    ({"airtune-devices": "0-12"}, "shard-per-node", "outside 0..9"),
    ({"airtune-devices": "a-b"}, "shard-per-node", "not a device list"),
    ({}, "shard-per-node", "names no devices"),
    ({"partition-id": 0, "num-partitions": 2}, "device-per-node", "num-partitions = 2"),
    ({"airtune-device": 1}, "per-gpu", "not a placement mode"),
])
def test_bad_node_config_is_one_line(node_config, placement, needle):
    with pytest.raises(ConfigError) as exc:
        node_devices(node_config, 10, placement)
    assert needle in str(exc.value) and "fix:" in str(exc.value) and "\n" not in str(exc.value)


def test_device_on_two_nodes_is_refused():
    assert device_map({5: [0, 1], 6: [2]}, 3) == {0: 5, 1: 5, 2: 6}
    with pytest.raises(ConfigError, match="hosted by nodes 5 and 6"):
        device_map({5: [0, 1], 6: [1]}, 3)
