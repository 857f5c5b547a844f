"""Benchmarks of the push pipeline (issue 6): ``python -m bench --mode quick|full``.

Every measurement runs against the local services of ``python -m infra up``
and is paired with a baseline measured in the same run; the relay and the
push worker are driven through their command lines (``python -m
producer.relay``, ``python -m entrypoints.cli consume``), so a change to their code
is measured by the next run without touching the harness.
"""
