"""The promotion gate: a fine-tuned model replaces its base only when it wins on frames it never saw.

It judges on *corrected* held-out frames: frames whose label differs from the base model's own
prediction. A frame accepted without edits scores the base 1.0 by construction and can only hide a
loss, so it does not count: the base's Dice on a counted frame must be below ``CORRECTED_BELOW``,
and a frame the review knows to be the base's own mask accepted unchanged (``corrected`` False)
does not count whatever its Dice. The review is needed for frames of other sizes than the model's
input: there the base's mask, resampled to the frame and back, scores it well below 0.99. The new model
must gain more than a margin in mean Dice *and* win on a strict majority of those frames; with
fewer than ``min_frames`` such frames there is nothing to judge on, and nothing is promoted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

#: A held-out frame whose label the base model reproduces to this Dice counts as uncorrected.
CORRECTED_BELOW = 0.99
#: Per-frame Dice differences within this count as ties.
TIE = 1e-3
#: Fewest held-out corrected frames judged on: a difference on 1-2 frames is not an improvement.
GATE_FRAMES = 3
#: Mean Dice gain the new model needs on them. Measured (benchmarks/bench_gate.py, docs/training.md
#: "Calibrating the gate"): 10 fine-tunes of the three variants on the hard domain, 40 models,
#: each judged on 30 clips it never saw. Against 0.02, 0.01 promoted the models that gain >= 0.01
#: on other patients more often (0.69 against 0.54) and kept more Dice per fine-tune (+0.0101
#: against +0.0082) at a cost of more promoted losers (0.44 against 0.36); 0 or 0.005 kept at
#: most +0.0014 more and promoted models that changed next to nothing on half the clips.
GATE_MARGIN = 0.01


@dataclass
class GateReport:
    """The gate's verdict, the numbers it rests on and one sentence saying why."""

    promoted: bool
    reason: str
    frame_ids: list[str] = field(default_factory=list)
    base_dice: list[float] = field(default_factory=list)
    new_dice: list[float] = field(default_factory=list)
    held_out: int = 0
    wins: int = 0
    losses: int = 0
    mean_gain: float = float("nan")
    sign_test_p: float = float("nan")
    #: Distinct stacks (clips) the judged frames come from; 0 when not known.
    stacks: int = 0

    @property
    def frames(self) -> int:
        return len(self.frame_ids)

    @property
    def base_mean(self) -> float:
        return _mean(self.base_dice)

    @property
    def new_mean(self) -> float:
        return _mean(self.new_dice)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateReport:
        return cls(**data)


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided sign test: P(at least ``wins`` wins of ``wins + losses`` fair coin flips)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n


def judge(
    ids: list[str],
    base_dice: list[float],
    new_dice: list[float],
    *,
    min_frames: int = GATE_FRAMES,
    margin: float = GATE_MARGIN,
    groups: list[str] | None = None,
    corrected: list[bool | None] | None = None,
    has_rib: list[bool] | None = None,
) -> GateReport:
    """Compare new vs base per held-out frame; promote only a clear win on enough frames.

    ``groups`` (the stack or clip of each frame) lets the verdict say how many stacks it rests on:
    a win on frames of one stack shows the new model is better on that stack, not on others.
    ``corrected`` (per frame: True, False or None for unknown) is what the review knows of each
    label (:meth:`TrainingSet.corrected_for`); False takes a frame out. ``has_rib`` (whether each
    label marks a rib pixel) takes out frames with no rib in view: there a model that marks
    nothing scores 1.0, so a gain on them is no evidence of finding ribs (a model trained to mark
    nothing was promoted on such frames).
    """
    held_out = len(ids)
    known = corrected if corrected is not None else [None] * held_out
    # The review can only take frames out (the base's own mask, accepted unchanged); a frame the
    # base reproduces to 0.99 was not corrected in any way that counts, edited or not.
    corrected_here = [
        i for i, d in enumerate(base_dice) if d < CORRECTED_BELOW and known[i] is not False
    ]
    picked = [i for i in corrected_here if has_rib is None or has_rib[i]]
    without_ribs = len(corrected_here) - len(picked)
    report = GateReport(
        promoted=False,
        reason="",
        frame_ids=[ids[i] for i in picked],
        base_dice=[round(base_dice[i], 6) for i in picked],
        new_dice=[round(new_dice[i], 6) for i in picked],
        held_out=held_out,
        stacks=len({groups[i] for i in picked}) if groups is not None else 0,
    )
    n = len(picked)
    note = (
        f"; {without_ribs} corrected frame(s) with no rib in view not judged (marking nothing "
        "scores them 1.0)"
        if without_ribs
        else ""
    )
    if n < min_frames:
        report.reason = (
            f"too few held-out corrected frames to judge: {n} of {held_out} held-out frames "
            f"differ from the base model's own prediction and show ribs, at least {min_frames} "
            f"are needed (curate and correct more frames){note}"
        )
        return report
    gains = [new_dice[i] - base_dice[i] for i in picked]
    report.wins = sum(g > TIE for g in gains)
    report.losses = sum(g < -TIE for g in gains)
    report.mean_gain = _mean(gains)
    report.sign_test_p = sign_test_p(report.wins, report.losses)
    of = ""
    if report.stacks:
        of = f" of {report.stacks} stack" + ("s" if report.stacks > 1 else "")
    numbers = (
        f"Dice {report.base_mean:.3f} -> {report.new_mean:.3f} "
        f"({report.mean_gain:+.3f}) on {n} held-out corrected frames{of}, better on "
        f"{report.wins}, worse on {report.losses}{note}"
    )
    if report.mean_gain <= margin:
        report.reason = f"no clear improvement: {numbers}; a gain above {margin:.3f} is needed"
    elif 2 * report.wins <= n:
        report.reason = f"not better on most frames: {numbers}"
    else:
        report.promoted = True
        report.reason = f"better than the base: {numbers}"
        if report.stacks == 1:
            report.reason += (
                " (all from one stack: shown for that stack, not for others; curate frames of "
                "more stacks to judge beyond it)"
            )
    return report
