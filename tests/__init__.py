"""Test suite; its layout mirrors the code it tests, one folder per app."""
