"""Chaos harness: the real pipeline under process kills and service outages (``make chaos``)."""
