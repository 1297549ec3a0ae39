"""ASGI middleware, outermost first: host_origin, identity, body_limit."""
