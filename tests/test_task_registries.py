"""One list of tasks, ``model_zoo.nets.TASKS``: every per-task table of the project covers exactly it.

Each table is built through ``model_zoo.nets.for_every_task``, which already fails at import when one misses a
task; this test names them all, so a table added without that check is caught here too.
"""

from __future__ import annotations

from typing import get_args

import pytest

from app.execution.runners import RUNNERS
from app.http.routes.stream import PATHS
from app.streaming.protocols import PROTOCOLS
from model_zoo.nets import TASKS, TaskName, for_every_task
from training.tasks import TASK_SPECS

REGISTRIES = {"training.tasks.TASK_SPECS": TASK_SPECS, "app.execution.runners.RUNNERS": RUNNERS,
              "app.streaming.protocols.PROTOCOLS": PROTOCOLS, "app.http.routes.stream.PATHS": PATHS,
              "model_zoo.nets.TaskName": dict.fromkeys(get_args(TaskName))}


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_every_registry_covers_exactly_the_tasks(name: str) -> None:
    assert set(REGISTRIES[name]) == set(TASKS)


def test_a_table_missing_or_inventing_a_task_fails_at_once() -> None:
    with pytest.raises(ValueError, match=r"TABLE .*missing \['kws'\], unknown \['tts'\]"):
        for_every_task({"asr": 1, "denoise": 2, "tts": 3}, "TABLE")
    assert for_every_task(dict.fromkeys(TASKS, 0), "TABLE") == dict.fromkeys(TASKS, 0)
