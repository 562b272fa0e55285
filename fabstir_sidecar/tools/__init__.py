"""Library functions the CLI and the HTTP gateway share, so that a user of the library gets
the same defaults and behaviour as a user of the CLI: role presets (:mod:`.roles`), the
one-shot find (:mod:`.find`), the diagnose report (:mod:`.diagnose`), inference backends by
name (:mod:`.backends`) and the local demo network (:mod:`.demo`).

Layering: tools may import node, discovery, host, client, protocols and core; nothing below
imports tools.
"""
