# SPDX-License-Identifier: MIT
"""A tiny Hugging Face ``Trainer`` run with the dynamics callback, the same on one process
and on every rank of a torchrun job (``python trainer_ranks.py OUT RUN_DIR``; imported by
name by the test, launched as a script by torchrun).

The data set is one global batch (8 rows with different numbers of loss tokens), so every
step's global batch is the whole data set whatever order the Trainer's sampler draws, and
a rank holds ``8 / world_size`` of its rows. Weights are fp64 (the comparison is of the
arithmetic, not of fp32 rounding)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

V, T, ROWS, STEPS = 64, 12, 8, 3


class Rows(torch.utils.data.Dataset):
    """``ROWS`` random sequences; row i has its first ``2 + i`` labels masked."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, V, (ROWS, T), generator=g)

    def __len__(self) -> int:
        return ROWS

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        labels = self.ids[i].clone()
        labels[: 2 + i] = -100
        return {"input_ids": self.ids[i], "labels": labels,
                "attention_mask": torch.ones(T, dtype=torch.long)}


def run_trainer(out: Path, run_dir: Path) -> None:
    """Train for ``STEPS`` steps (global batch ``ROWS``) with the dynamics callback writing
    to ``run_dir``; under a launcher each of the ``WORLD_SIZE`` ranks takes its share."""
    import os

    from transformers import Trainer, TrainingArguments

    from thoughtgrad.dynamics.callback import DynamicsCallback
    from thoughtgrad.models.tiny import tiny_model

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    model = tiny_model("llama", vocab_size=V, seed=0).double().train()
    data = Rows()
    probe = {k: torch.stack([data[i][k] for i in range(5)]) for k in data[0]}
    cb = DynamicsCallback(run_dir, regime="cot", probe_batch=probe, curvature_every=2)
    args = TrainingArguments(output_dir=str(out), max_steps=STEPS,
                             per_device_train_batch_size=ROWS // world_size,
                             learning_rate=1e-3, logging_steps=1, save_strategy="no",
                             report_to=[], use_cpu=True, seed=0, max_grad_norm=1.0,
                             disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]).train()


if __name__ == "__main__":
    torch.set_num_threads(1)
    run_trainer(Path(sys.argv[1]), Path(sys.argv[2]))
