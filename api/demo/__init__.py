"""The demo page at GET /: static files that speak only the public API."""
