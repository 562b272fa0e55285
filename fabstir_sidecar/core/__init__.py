"""The pure basics: peer ids, multiaddrs, varints, the error tree, settings."""
