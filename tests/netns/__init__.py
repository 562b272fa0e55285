"""Multi-host tests in Linux network namespaces that the tests create and remove."""
