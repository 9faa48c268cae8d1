"""Fuzzers that attack a real KBS over raw sockets and its sans-IO core with generated bodies.

`python -m tests.fuzz.http_fuzzer --help` runs the network fuzzer by hand; the pytest wrappers
(tests/e2e/test_fuzz_http.py, tests/unit/test_fuzz_bodies.py) keep short runs of both in CI.
"""
