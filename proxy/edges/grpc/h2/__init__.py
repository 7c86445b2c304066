"""HTTP/2 for the gRPC edge: frames, flow control and HPACK, as much as relaying gRPC calls needs (no server
push, no priorities, no HTTP/1.1 upgrade: gRPC clients speak h2c with prior knowledge, or TLS with ALPN h2)."""
