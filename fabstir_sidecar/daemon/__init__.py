"""Everything about the go-libp2p-daemon (p2pd) process: binary, identity, control."""
