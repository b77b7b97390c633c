"""The Rib Segmentation dock widget (npe2 command ``napari_ribseg._widgets:RibSegWidget``).

One module per dock section (``load``, ``segment``, ``review``, ``finetune``) over the Qt-free core;
``main`` assembles them.
"""

from napari_ribseg._widgets.main import RibSegWidget

__all__ = ["RibSegWidget"]
