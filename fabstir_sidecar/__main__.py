"""``python -m fabstir_sidecar`` runs the CLI (through the console script's entry point)."""

from fabstir_sidecar_entry import main

main()
