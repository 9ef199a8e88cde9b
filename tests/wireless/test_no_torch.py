"""The wireless cost model and baseline allocators are pure numpy: they must not import torch."""

import os
import subprocess
import sys
from pathlib import Path

import airtune

CODE = """
import sys
import numpy as np
from airtune.wireless import channel, cost, devices, topology, units
from airtune.allocation import baselines, result
baselines.allocate_equal(rng=np.random.default_rng(0), round_idx=0, channel_gain=np.ones(4),
                         max_power_w=0.2, total_bandwidth_hz=1e6, n=2, scheduler="best_channel")
assert "torch" not in sys.modules, "torch was imported"
"""


def test_numpy_only_modules_do_not_import_torch():
    src = str(Path(airtune.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
