"""Regression corpora built from public material the package registries serve (see each
module): AWS's own API examples, and real code and documentation."""
