"""How many steps does label-free adaptation need? (The AdaptConfig.steps default, docs/training.md.)

Two 30-frame hard-domain stacks (410x562, seeds 570000+), both bundled U-Nets, 40 vs 120 steps;
Dice of the adapted model on its own stack (labels used only to score), and wall time.

    OMP_NUM_THREADS=2 python benchmarks/bench_adapt_steps.py
"""

import sys
import time

sys.path.insert(0, "benchmarks")
import torch  # noqa: E402

from napari_ribseg.core.devices import flush_denormals  # noqa: E402

flush_denormals()  # as the ribseg training commands do
torch.set_num_threads(2)
import bench_finetune as b  # noqa: E402
from napari_ribseg.core.evaluation import evaluate_model  # noqa: E402
from napari_ribseg.core.models import load_model  # noqa: E402
from napari_ribseg.core.training.adapt import AdaptConfig, adapt_sync  # noqa: E402

stacks = b.hard_domain_set(2, 30, 70_000, (410, 562))
for name in ("v-unet-compact", "unet-compact"):
    base = load_model(name)
    for g in stacks.group_names:
        stack = stacks.subset([i for i, x in enumerate(stacks.groups) if x == g])
        before = evaluate_model(base, stack, device="cpu").mean["dice"]
        for steps in (40, 120):
            t0 = time.perf_counter()
            res = adapt_sync(base, stack.images, AdaptConfig(steps=steps, device="cpu"), source=g)
            wall = time.perf_counter() - t0
            after = evaluate_model(res.model, stack, device="cpu").mean["dice"]
            print(
                f"{name} {g} steps={steps} before={before:.3f} trained={after:.3f} promoted={res.promoted} wall={wall:.0f}s",
                flush=True,
            )
