"""The data plane: the per-request path, on asyncio Protocols and the llhttp parser (httptools)."""
