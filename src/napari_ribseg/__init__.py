"""napari-ribseg: rib segmentation in lung ultrasound.

Importing the package imports neither Qt, napari nor torch; the npe2 manifest points at thin adapters
that import them lazily.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
