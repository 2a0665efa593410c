"""Process-level runtime choices (model_zoo.runtime), each in a fresh interpreter: they change the process."""

from __future__ import annotations

import subprocess
import sys

FREEZE = """
import gc, time
import torch
from model_zoo.runtime import freeze_loaded_objects
import model_zoo
before = len(gc.get_objects())
frozen = freeze_loaded_objects()
assert frozen == gc.get_freeze_count() and frozen > 0.9 * before, (frozen, before)
assert sum(len(gc.get_objects(g)) for g in range(3)) < 0.1 * before  # what collections still walk
garbage = [[i] for i in range(1000)]
for cell in garbage:
    cell.append(cell)  # cycles made after the freeze are still collected
del garbage, cell
assert gc.collect() >= 1000
"""


def test_objects_loaded_before_the_freeze_are_out_of_the_collectors_walk():
    done = subprocess.run([sys.executable, "-c", FREEZE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
