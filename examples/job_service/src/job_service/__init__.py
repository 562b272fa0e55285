"""Example service on fabstir-sidecar: find a host, run a job, fail over."""

from .service import Answer, JobService, NoHostAvailableError

__all__ = ["Answer", "JobService", "NoHostAvailableError"]
