"""Fakes of outside systems, served over real sockets so the client libraries run for real."""
