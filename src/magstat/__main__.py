"""``python -m magstat``: the same as the ``magstat`` command."""

from magstat.cli import main_cli

main_cli()
