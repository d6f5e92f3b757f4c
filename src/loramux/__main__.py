"""`python -m loramux` runs the CLI."""

from loramux.cli import main

main()
