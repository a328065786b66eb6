"""The security regression suite: each finding of a penetration test, as a test that failed
on the code before its fix (see docs/security.md for the model these tests hold to)."""
