"""Worker for test_ddp.py: AdaMix with consistency under DistributedDataParallel (gloo, CPU), a few steps.

Run as ``torchrun --nproc_per_node 2 tests/ddp_worker.py OUT``; each rank writes its trainable parameters.
"""
import os
import sys

import torch
from datasets import Dataset
from transformers import TrainingArguments

sys.path.insert(0, os.path.dirname(__file__))
import peftkit  # noqa: E402
from conftest import tiny  # noqa: E402
from peftkit.features import PadCollator  # noqa: E402
from peftkit.trainer import PeftTrainer  # noqa: E402

out = sys.argv[1]
rank = int(os.environ["RANK"])
model = peftkit.apply(tiny("bert"), "adamix", bottleneck=8, num_modules=4, seed=0)
g = torch.Generator().manual_seed(rank + 10)  # different data on each rank
rows = {"input_ids": torch.randint(3, 99, (32, 8), generator=g).tolist(), "attention_mask": [[1] * 8] * 32,
        "labels": torch.randint(0, 3, (32,), generator=g).tolist()}
args = TrainingArguments(output_dir=os.path.join(out, "ckpt"), per_device_train_batch_size=4, max_steps=4,
                         learning_rate=1e-2, use_cpu=True, ddp_backend="gloo", ddp_find_unused_parameters=True,
                         report_to=[], save_strategy="no", disable_tqdm=True, seed=0)
trainer = PeftTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows), data_collator=PadCollator(0),
                      consistency=1.0)
trainer.train()
state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
torch.save(state, os.path.join(out, f"rank{rank}.pt"))
