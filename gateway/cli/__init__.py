"""The command line around the server: the operator's ``admin`` client and the checks made before serving.

``admin`` (``python gateway.py admin ...``) is a thin client of a running
gateway's ``/admin`` HTTP API: it never opens the ledger itself, so it works the
same against an embedded or a Redis ledger, against a gateway on another
machine, and while the gateway serves traffic.
"""
