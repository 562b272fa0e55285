"""Pure wire-format code: bytes in, values out.

Nothing in this package does I/O or touches asyncio, so every rule of
``PROTOCOL.md`` it implements can be tested exhaustively without a network:

* :mod:`.json_codec` - strict UTF-8 JSON encoding and decoding, 1 MiB cap.
* :mod:`.framing` - 4-byte big-endian length-prefixed frames, incremental decoder.
* :mod:`.messages` - typed, validated message schemas (PROTOCOL.md section 3).
* :mod:`.keys` - DHT provider keys (CID v1, ``json`` multicodec, sha2-256).
"""
