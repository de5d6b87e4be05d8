"""``python -m ldengine``: the same as the ``ldengine`` command."""
from ldengine.cli import main

main()
