"""The gRPC edge: h2c (or TLS) calls forwarded as raw bytes to a gRPC upstream, through the protocol-neutral
exchange, so cohorts, faults, metrics and guards work on calls as on HTTP/1.1 requests.

``server`` (grpcio's ``grpc.aio``: the listener, the upstream channels, one coroutine per call) is imported
only when a policy has a ``grpc:`` section, so the sidecar runs without grpcio; ``call`` (the request facts),
``exchange`` (the ``Exchange`` subclass) and ``status`` (codes and their HTTP equivalents) never import it.
"""
