"""The test suite, laid out like the code: tests/<area>/, tests/invariants/, tests/e2e/."""
