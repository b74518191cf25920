"""HTTP entry point: the ASGI app that serves troth's pages and API."""
