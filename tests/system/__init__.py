"""Real-process suites: proxies as uvicorn processes, private redis-servers and sentinels,
stopped, killed and paused while clients send requests."""
