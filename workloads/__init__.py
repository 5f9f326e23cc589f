"""The workloads: one package per workload, each defining ``WORKLOAD`` (see ``harness.workload``).

Nothing outside a workload's folder names it: ``harness.workload.registry()``
finds every package here. To add one, copy ``layer_streaming/``.
"""
