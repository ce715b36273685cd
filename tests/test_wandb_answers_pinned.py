"""W&B answers are byte-identical to the snapshot taken before the source interface (issue 13):
moving W&B onto the interface changed no answer."""

from __future__ import annotations

import json

from helpers import REPO
from wandb_answers import answers_of

SNAPSHOT = REPO / "tests" / "snapshots" / "wandb_answers.json"


def test_wandb_answers_are_unchanged_by_the_source_interface():
    pinned = json.loads(SNAPSHOT.read_text())
    now = answers_of(REPO)
    assert sorted(now) == sorted(pinned)
    changed = [k for k in pinned if pinned[k] != now[k]]
    assert not changed, f"{len(changed)} answers changed, first {changed[0]!r}:\n{now[changed[0]]}"
