"""`python -m vlarena` is the `vlarena` command."""

from vlarena.cli import app

app()
