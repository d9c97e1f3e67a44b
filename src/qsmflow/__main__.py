"""``python -m qsmflow``: the command line."""

from .cli import main

main()
