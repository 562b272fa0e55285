"""``python -m fabstir_sidecar`` runs the CLI."""

from .cli.app import main

main()
