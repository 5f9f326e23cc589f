"""Discrete-event (SimPy) model of GPUs that runs harness policies."""

from sim.engine import PolicyError, SimBackend, SimDeadlock

__all__ = ["PolicyError", "SimBackend", "SimDeadlock"]
