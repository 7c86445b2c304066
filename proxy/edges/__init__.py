"""Protocol edges: each parses one wire protocol into request facts, runs a protocol-neutral ``Exchange``
(proxy/exchange.py) per request, and speaks the protocol to the client and the upstream.

``http1/``: HTTP/1.1 on asyncio Protocols and llhttp (httptools), streams (chunked, SSE) included.
"""
