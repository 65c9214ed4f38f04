"""Experiments: the same work through several modes (swarm, company, solo, round robin), live or
simulated, measured from each run's events and ledger, and reported as JSON and HTML.
Depends on the engine, the store, the gateway and the workloads; nothing depends on it but edges.
"""
