"""Radio resource allocation: who transmits, with which bandwidth, power and directives.

Layout (who may import whom; docs/design.md, "Layout"):

- the contract, ``planner.py`` (``Planner``, ``PlannerContext``, ``RoundInputs``), ``result.py``
  (``Allocation``) and ``exchange.py`` (the typed ``Directives`` and ``Hints``), and the
  baselines ``baselines.py``;
- shared kernels: ``min_bandwidth.py`` (Lambert-W minimum bandwidth) and ``roots.py`` (bracketing
  root finders);
- one subpackage per paper, each importing only the contract, the kernels and ``airtune.wireless``:
  ``split_fed/`` (paper 1), ``tsfa/`` (paper 2), ``switching/`` (paper 3).
"""
