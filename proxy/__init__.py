"""The proxy app: the Claude Messages API endpoint that masks requests and unmasks replies."""
