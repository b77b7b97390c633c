import sys

from napari_ribseg.cli import main

sys.exit(main())
