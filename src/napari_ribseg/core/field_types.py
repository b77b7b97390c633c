"""Whether a config field's value is of its declared type, for the configs' ``validate``.

Python does not check dataclass annotations: ``FinetuneConfig(epochs=True)`` ran one epoch,
``steps=3.5`` ran, and ``batch_size=2.5`` failed later with a message about process counts. Each
config names its own field and raises its own error; this module only says what was expected.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["expected_type"]

#: What a value of each simple declared type must be, in words.
_WORDS = {"int": "a whole number", "float": "a number", "bool": "True or False", "str": "a text"}


def _is(value: object, declared: str) -> bool:
    if isinstance(value, bool | np.bool_):
        return declared == "bool"
    if declared == "int":
        return isinstance(value, numbers.Integral)
    if declared == "float":
        return isinstance(value, numbers.Real)
    if declared == "str":
        return isinstance(value, str)
    return declared != "bool"  # 1 is no bool; other types are checked by their config


def expected_type(value: object, declared: str) -> str | None:
    """``None`` when ``value`` fits ``declared`` (a dataclass field's annotation as text: ``int``,
    ``float``, ``bool``, ``str``, optionally ``| None``, or a tuple of ints or of floats); else
    what was expected, in words (``"a whole number"``). bool is never taken for a number, nor a
    float for a whole number (2.5 is not floored to 2); other annotations are not checked."""
    declared = declared.replace(" ", "")
    if declared.endswith("|None"):
        if value is None:
            return None
        declared = declared[: -len("|None")]
    if declared.startswith("tuple[") and declared.endswith("]"):
        kinds = declared[len("tuple[") : -1].split(",")
        if len(set(kinds)) != 1 or kinds[0] not in ("int", "float"):
            return None
        words = f"{len(kinds)} {'whole ' if kinds[0] == 'int' else ''}numbers"
        if isinstance(value, str) or not hasattr(value, "__len__") or len(value) != len(kinds):
            return words
        return None if all(_is(v, k) for v, k in zip(value, kinds, strict=True)) else words
    if declared not in _WORDS:
        return None
    return None if _is(value, declared) else _WORDS[declared]
