"""Shared test helpers: generated data, reference nets, peer stubs, queue processes."""
