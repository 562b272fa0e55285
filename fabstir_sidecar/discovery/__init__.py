"""Discovery: finding hosts (bootstrap, DHT, mDNS, peer exchange) and matching them."""
