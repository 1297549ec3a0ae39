"""HTTP: the ASGI app (app.py), uvicorn on loopback (server.py) and the middleware that
every request passes (middleware/: Host/Origin, identity, body size)."""
