"""``ldengine finetune``: LoRA on the student, one module per method: ``selection`` (``ld``,
the manual's selections), ``kd`` (the expert's moves as text), ``writing`` (``write`` and
``read``: rules into functions and into the rule language), over ``config`` (what they share)."""
from __future__ import annotations

from ldengine.finetune.config import (FinetuneConfig, accuracy, check_promotable, data_hash, quick, shuffled,
                                      trained_facts, trained_functions)
from ldengine.finetune.kd import KD_TRAIN_GAMES, KDCurve, finetune_kd
from ldengine.finetune.selection import (REPLAY_EVERY, TaskData, balanced, build_data, continuation, finetune,
                                         new_functions, task_data, weighted)
from ldengine.finetune.writing import (READ_CLAUSES, READ_TRAIN_RULES, WRITE_HELDOUT_SEEDS, WRITE_TRAIN_SEEDS,
                                       finetune_read, finetune_write)

__all__ = ["FinetuneConfig", "accuracy", "check_promotable", "data_hash", "quick", "shuffled", "trained_facts",
           "trained_functions", "KD_TRAIN_GAMES", "KDCurve", "finetune_kd", "REPLAY_EVERY", "TaskData", "balanced",
           "build_data", "continuation", "finetune", "new_functions", "task_data", "weighted", "READ_CLAUSES",
           "READ_TRAIN_RULES", "WRITE_HELDOUT_SEEDS", "WRITE_TRAIN_SEEDS", "finetune_read", "finetune_write"]
