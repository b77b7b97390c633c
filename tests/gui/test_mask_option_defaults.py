"""The Segment section's Mask controls start at MaskOptions' defaults, within its ranges."""

from __future__ import annotations

from napari_ribseg.core.session import MaskOptions


def test_mask_controls_start_at_the_dataclass_defaults(docked):
    _viewer, widget = docked
    section = widget.segment_section
    assert section.options() == MaskOptions()
    fields = MaskOptions.__dataclass_fields__
    for control, name in (
        (section.threshold_slider, "threshold"),
        (section.min_size_spin, "min_size"),
        (section.keep_spin, "keep_largest"),
    ):
        low, high = fields[name].metadata["range"]
        assert (control.minimum(), control.maximum()) == (low, high), name
