"""Masking rules: patterns and terms in the database, the pure engine, the Redis mapping store."""
