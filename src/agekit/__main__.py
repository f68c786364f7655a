"""``python -m agekit``: the same as the ``agekit`` command."""
import sys

from agekit.cli import main

if __name__ == "__main__":
    sys.exit(main())
