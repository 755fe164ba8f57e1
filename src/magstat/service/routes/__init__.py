"""The routers of the HTTP service, one per surface."""
