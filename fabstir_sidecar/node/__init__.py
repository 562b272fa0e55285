"""DiscoveryManager and the node it runs."""
