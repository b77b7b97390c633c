"""Cost of a fine-tune's resume state per epoch, with and without the collapse guard's snapshots.

A fine-tune with an output writes ``<out>.resume/`` after every epoch (``core.training.resume``).
Since 2026-12-03 it also holds the guard's healthy snapshot and the pending one (weights and
optimiser state each), so a resumed run guards as an uninterrupted one. This times the write and
reports the files' size for a bundled model with a trained Adam state: "live" is the weights and
optimiser state alone (as before), "snapshots unchanged" an epoch that took no new snapshot (the
snapshots file stays), "snapshots new" a validation point that did (both rewritten).

    python benchmarks/bench_resume_state.py --models v-unet-compact,unet-compact --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path


def _measure(name: str, repeats: int) -> dict:
    import torch

    from napari_ribseg.core.models import load_model
    from napari_ribseg.core.training.resume import _save_resume, resume_paths

    model = load_model(name).model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(2, 1, model.input_size, model.input_size)
    model(x).mean().backward()
    optimizer.step()  # Adam's moments exist, as after the first epoch

    def snapshot(epoch: int) -> tuple:  # as the guard takes one: its own copies
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return (epoch, weights, copy.deepcopy(optimizer.state_dict()))

    out = {"model": name, "parameters": sum(p.numel() for p in model.parameters())}
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "m.safetensors"
        same = {"snapshot": snapshot(3), "pending": snapshot(4)}
        for label in ("live", "snapshots unchanged", "snapshots new"):
            times = []
            for i in range(repeats):
                if label == "live":
                    kept = {"snapshot": None, "pending": None}
                elif label == "snapshots unchanged":
                    kept = same  # most epochs: the guard took no new snapshot
                else:
                    kept = {"snapshot": snapshot(10 + 2 * i), "pending": snapshot(11 + 2 * i)}
                start = time.perf_counter()
                _save_resume(target, model, optimizer, {"epoch": 1}, kept=kept)
                times.append(time.perf_counter() - start)
            folder = resume_paths(target)[0].parent
            size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
            out[label] = {"seconds": statistics.median(times), "mb": size / 1e6}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="v-unet-compact,unet-compact")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = [_measure(name, args.repeats) for name in args.models.split(",")]
    labels = ("live", "snapshots unchanged", "snapshots new")
    print("| model | parameters | " + " | ".join(f"{x}: s / MB" for x in labels) + " |")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = " | ".join(f"{r[x]['seconds']:.3f} / {r[x]['mb']:.1f}" for x in labels)
        print(f"| {r['model']} | {r['parameters']:,} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
