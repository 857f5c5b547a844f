"""Pure domain model and ports of the OrderFlow ERP push pipeline.

Nothing in this package performs I/O or imports an I/O library; adapters
depend on it, never the other way round.
"""
