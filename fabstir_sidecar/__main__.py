"""``python -m fabstir_sidecar`` runs the CLI."""

from fabstir_sidecar.cli.app import main

main()
