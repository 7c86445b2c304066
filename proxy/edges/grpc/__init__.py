"""The gRPC edge: h2c (or TLS) calls forwarded as raw bytes to a gRPC upstream, through the protocol-neutral
exchange, so cohorts, faults, metrics and guards work on calls as on HTTP/1.1 requests.

``h2`` is the HTTP/2 (frames, flow control, HPACK), ``server`` the listener and the client's connections,
``upstream`` the pooled connections to the model server, ``relay`` one call between them, ``call`` its request
facts, ``exchange`` the ``Exchange`` subclass, ``status`` the codes and their HTTP equivalents. No gRPC library:
a call is HEADERS, length-prefixed messages and trailers, which the edge relays as they are.
"""
