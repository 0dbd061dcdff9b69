"""PACER's pre-verifier: the network, training-data collection and training (see docs/pacer.md).

The length policy that uses it lives with the other policies (strategies/policies/pacer.py).
"""
