"""``ribseg simulate``: write simulated lung-ultrasound clips as a paired IMG/ + MASK/ dataset."""

from __future__ import annotations

import argparse
import sys

LABELS = ("rib", "pleura", "shadow")


def _label_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in LABELS]
    if not names or bad or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"--labels takes a comma-separated subset of {','.join(LABELS)}; got {text!r}"
        )
    return names


def _frame_side(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 16 <= value <= 8192:
        # 8192: the largest frame the readers accept (core.budget.MAX_FRAME_PIXELS).
        raise argparse.ArgumentTypeError(f"expected a frame side of 16..8192 pixels; got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0; got {text!r}")
    return value


def register(subparsers) -> None:
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate lung-ultrasound clips with ground-truth rib masks",
        description=(
            "Simulate CLIPS cines of FRAMES frames and write them as a paired dataset: "
            "OUT/IMG/img_<id>.tif and OUT/MASK/mask_<id>.tif with ids c<clip>_f<frame>, so the "
            "clip is the group. The first of --labels goes to MASK/, any others to MASK_<label>/."
        ),
    )
    parser.add_argument(
        "--frames", type=int, default=32, metavar="N", help="frames per clip (default: 32)"
    )
    parser.add_argument(
        "--size",
        type=_frame_side,
        nargs=2,
        default=(256, 256),
        metavar=("H", "W"),
        help="frame size, each 16..8192 px (default: 256 256)",
    )
    parser.add_argument(
        "--probe",
        choices=("linear", "convex", "phased", "random"),
        default="random",
        help="probe geometry; 'random' draws it per clip (default)",
    )
    parser.add_argument(
        "--view",
        choices=("longitudinal", "transverse", "mixed"),
        default="longitudinal",
        help="'longitudinal': across the ribs (rib, intercostal space, rib; default); "
        "'transverse': in one intercostal space along the ribs, so no rib is in view; "
        "'mixed': each clip transverse with the share real scans show (TRANSVERSE_SHARE, 10%%)",
    )
    parser.add_argument(
        "--domain",
        choices=("standard", "hard", "edge"),
        default="standard",
        help=(
            "'standard': random_config, the training distribution; 'hard': hard_domain_config "
            "(dark, soft shadows, overlays, wide fan, JPEG; convex unless --probe is given); "
            "'edge': edge_config (random_config with shadows up to as bright as the lung, raw "
            "speckle and more clutter: the edges of real scans). "
            "--size still sets the frame; the hard domain's own size is 820 1124"
        ),
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, help="same seed, same dataset (default: 0)"
    )
    parser.add_argument(
        "--clips", type=int, default=1, metavar="C", help="number of clips (default: 1)"
    )
    parser.add_argument(
        "--labels",
        type=_label_list,
        default=["rib"],
        metavar="L[,L...]",
        help="ground truth to write, from rib,pleura,shadow (default rib)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="new or empty folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Simulate the clips and write the dataset; core errors propagate to ``main``."""
    import numpy as np

    from napari_ribseg.cli.progress_bar import ProgressBar
    from napari_ribseg.core.atomic import atomic_path
    from napari_ribseg.core.io import write_paired_dataset
    from napari_ribseg.core.jobs import Progress
    from napari_ribseg.core.simulate import domain_config, simulate_cine_job
    from napari_ribseg.core.simulate.config import mixed_view

    if args.frames < 1 or args.clips < 1:
        print("ribseg simulate: error: --frames and --clips must be >= 1", file=sys.stderr)
        return 2
    from pathlib import Path

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        # Before simulating, not after: write_paired_dataset refuses it only at the end.
        what = "is a file" if not out.is_dir() else "is not an empty folder"
        print(
            f"ribseg simulate: error: {out}: already exists and {what}; --out takes a new or "
            "empty folder",
            file=sys.stderr,
        )
        return 2
    size = (int(args.size[0]), int(args.size[1]))
    total = args.frames * args.clips
    bar = ProgressBar("simulate")
    # One independent stream per clip: clip k is the same whatever --clips is.
    streams = np.random.SeedSequence(args.seed).spawn(args.clips)
    images, masks, ids = [], [], []
    extra: dict[str, list[np.ndarray]] = {name: [] for name in args.labels[1:]}
    for clip, stream in enumerate(streams):
        rng = np.random.default_rng(stream)
        view = args.view
        if view == "mixed":
            # Its own stream: the clip's configuration draws stay those of any other --view.
            view = mixed_view(np.random.default_rng(stream.spawn(1)[0]))
        overrides = {"size": size, "view": view}
        if args.probe != "random":
            overrides["probe"] = args.probe
        config = domain_config(args.domain, rng, **overrides)
        seed = int(rng.integers(2**31))
        job = simulate_cine_job(args.frames, config, seed)
        while True:
            try:
                event = next(job)
            except StopIteration as done:
                cine = done.value
                break
            bar(Progress("batch", clip * args.frames + event.step, total))
        for i in range(cine.n_frames):
            ids.append(f"c{clip:03d}_f{i:04d}")
            images.append(np.rint(cine.frames[i] * 255.0).astype(np.uint8))
            masks.append(getattr(cine, args.labels[0])[i])
            for name in extra:
                extra[name].append(getattr(cine, name)[i])
    if not extra:
        root = write_paired_dataset(out, images, masks, ids, layout="IMG/MASK")
    else:
        # Built whole beside --out and renamed into place: the MASK_<label>/ folders were written
        # after IMG/ + MASK/ had appeared, so a failure left a dataset without them.
        import os
        import shutil
        import tempfile

        import tifffile

        out.absolute().parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.absolute().parent)
        )
        try:
            built = write_paired_dataset(staging / "data", images, masks, ids, layout="IMG/MASK")
            for name, label_masks in extra.items():
                for sample_id, mask in zip(ids, label_masks, strict=True):
                    target = built / f"MASK_{name}" / f"mask_{sample_id}.tif"
                    with atomic_path(target) as tmp:
                        tifffile.imwrite(tmp, mask * np.uint8(255), compression="zlib")
            if out.exists():
                out.rmdir()  # empty, checked above; a rename cannot replace a folder everywhere
            os.replace(built, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        root = out
    print(f"wrote {len(ids)} frames of {args.clips} clip(s) to {root}")
    return 0
