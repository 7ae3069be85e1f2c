"""`python -m canonry`: the console script."""
from canonry.cli.launcher import main

__all__ = []

main()
