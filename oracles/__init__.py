"""Independent implementations that lrpkit is checked and timed against (not part of lrpkit).

The tests compare lrpkit with them and ``bench/`` times them beside it, so both import them from
here (the repository root is on the tests' path through ``pythonpath`` in ``pyproject.toml``; a
benchmark puts it there itself). They import nothing of lrpkit but constants, so that a mistake
in lrpkit cannot hide in its oracle.

- :mod:`oracles.zennit_lrp`: zennit 0.5.1 configured to compute LRP-Tutorial exactly, and zennit's
  own rules with their default stabilizer.
- :mod:`oracles.thesis_code`: the thesis code (PyPI ``lrp-pf-auc`` 0.1.6) with the rule maps of its
  LRP-Tutorial, Decreasing-γ and uniform runs.
"""
