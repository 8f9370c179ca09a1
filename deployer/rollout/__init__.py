"""Rollout strategies: how one deployment replaces what serves (bluegreen.py for containers).

The pieces they use: container specs (containers.py), host ports (ports.py), the health gate
(health.py), and adoption of what already runs when deployer starts (adoption.py).
"""
