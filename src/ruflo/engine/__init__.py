"""The engine drives a hive through time: simulated (simulate.py) or live; it runs the policies of
ruflo.policies and may depend on them, the model, and (for live runs) the store and gateway.
"""
