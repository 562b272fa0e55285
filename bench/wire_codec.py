"""Micro-benchmark of the wire message codec (no network): the token path and a job request.

Run: ``python -m bench.wire_codec``. Prints the best of several timeit repeats, in
nanoseconds per call, for each operation a streamed job does per token (``JobToken``
to_json and from_json) and the per-job request and status decode.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from fabstir_sidecar.wire.json_codec import decode_json_object, encode_json
from fabstir_sidecar.wire.messages import JobRequest, JobToken, Status
from tests.wire_samples import HOST_JSON

NUMBER = 200_000
REPEAT = 7

TOKEN = JobToken(job_id="0123456789abcdef0123456789abcdef", text=" w123")
TOKEN_JSON = TOKEN.to_json()
TOKEN_BYTES = encode_json(TOKEN_JSON)
REQUEST_JSON = JobRequest(
    job_id="0123456789abcdef", model="llama-3.2-1b-instruct", prompt="hello", max_tokens=64
).to_json()
STATUS_JSON = {"type": "status", "host": HOST_JSON}

CASES: dict[str, tuple[Callable[[], object], int]] = {
    "job_token.to_json": (TOKEN.to_json, NUMBER),
    "job_token.from_json": (lambda: JobToken.from_json(TOKEN_JSON), NUMBER),
    "job_token bytes->msg": (lambda: JobToken.from_json(decode_json_object(TOKEN_BYTES)), NUMBER),
    "job_request.from_json": (lambda: JobRequest.from_json(REQUEST_JSON), NUMBER // 4),
    "status.from_json": (lambda: Status.from_json(STATUS_JSON), NUMBER // 10),
}


def main() -> None:
    for name, (fn, number) in CASES.items():
        best = min(timeit.repeat(fn, number=number, repeat=REPEAT)) / number
        print(f"{name:24s} {best * 1e9:8.0f} ns")


if __name__ == "__main__":
    main()
