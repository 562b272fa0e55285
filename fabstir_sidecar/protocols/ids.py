"""Protocol ids of docs/protocol.md §2-4 (the SDK message id depends on the node's prefix)."""

JOB = "/fabstir-llm/job/1.0.0"
STATUS = "/fabstir-llm/status/1.0.0"
DISCOVERY = "/fabstir-llm/discovery/1.0.0"
INFERENCE = "/fabstir/inference/1.0.0"
