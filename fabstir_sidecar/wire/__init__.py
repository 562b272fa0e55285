"""Pure wire-format code: bytes in, values out.

Nothing in this package does I/O or touches asyncio, so every rule of
docs/protocol.md it implements can be tested exhaustively without a network:

* :mod:`.json_codec` - strict UTF-8 JSON encoding and decoding, 1 MiB cap.
* :mod:`.framing` - 4-byte big-endian length-prefixed frames.
* :mod:`.schema` - the declarative field-table engine messages are validated with.
* :mod:`.messages` - the message schemas of docs/protocol.md §6.
* :mod:`.codes` - the ``error`` and ``job_rejected`` codes.
* :mod:`.keys` - DHT provider keys (CID v1, ``json`` multicodec, sha2-256).
"""
