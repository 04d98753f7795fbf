"""Whether a distillation recipe fits its teacher, from the teacher's config alone (no weights): every rule a
stage enforces, walked along the chain teacher → assistant(s) → student. One place for these rules:
`minilm distill` runs them before loading any weights, and `minilm run`'s pre-flight calls the same function,
so the two give the same verdicts.

Per stage, against the model it distils from:
- at most as deep and as wide;
- `init: teacher-layers`: the same width, and `init_layers` (or the default picks) valid for the teacher;
- `init: teacher-pruned`: the same picks rule, and a width the teacher's heads fit (`models.prune.pruned_shape`);
- heads dividing the width (`models.student.student_config`);
- the loss's heads rule (`MiniLMObjective`: v1 losses compare head by head unless `relation_heads` is set);
- the loss's layers: `teacher_layer` inside the teacher, `student_layer` the student's last (no untrained layers).
"""

from __future__ import annotations

import copy
from typing import Any

from minilm_deploy.distill.objective import MiniLMObjective
from minilm_deploy.distill.recipe import DistillRecipe, LossSpec, StudentSpec
from minilm_deploy.errors import InputError
from minilm_deploy.models.adapters import attention_shape, resolve_layer


def stage_chain(spec: DistillRecipe) -> list[tuple[str, StudentSpec, LossSpec]]:
    """(name, student, loss) per stage, in order."""
    count = len(spec.assistants)
    stages = [("assistant" if count == 1 else f"assistant-{i}", a.student, a.loss or spec.loss)
              for i, a in enumerate(spec.assistants, start=1)]
    return [*stages, ("student", spec.student, spec.loss)]


def check_fits(spec: DistillRecipe, teacher_config: Any) -> None:
    """Raise InputError (one line, naming the key) at the first stage that does not fit what it distils from."""
    from minilm_deploy.distill.trainer import check_student_layer
    from minilm_deploy.models.student import student_config, student_layer_picks

    config = teacher_config
    for name, student, loss in stage_chain(spec):
        layers, hidden, heads = attention_shape(config)
        what = f"distill.{'student' if name == 'student' else name} ({student.layers}x{student.hidden})"
        if student.layers > layers:
            raise InputError(f"{what} has more layers than its teacher ({layers}); a student must be at most as deep")
        if student.hidden > hidden:
            raise InputError(f"{what} is wider than its teacher ({hidden}); a student must be at most as wide")
        if student.init == "teacher-layers" and student.hidden != hidden:
            raise InputError(f"{what}: init teacher-layers copies layers, so hidden must equal the teacher's "
                             f"({hidden}); use init: teacher-pruned (or random) for another width")
        if student.copies_layers:
            student_layer_picks(student, layers)
        next_config = student_config(config, student)  # heads must divide the width; a pruned width fits its teacher
        own_heads = attention_shape(next_config)[2]
        MiniLMObjective(loss, heads, own_heads)  # the loss's heads rule
        resolve_layer(loss.teacher_layer, layers, what="distill.loss.teacher_layer")
        check_student_layer(loss.student_layer, student.layers)
        config = copy.deepcopy(next_config)
