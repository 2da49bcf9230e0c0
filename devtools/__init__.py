"""Development tools, kept out of the installed package and the container image.

- :mod:`devtools.zammad_simulator`: a stateful Zammad REST API for tests, the demo, the smoke
  test and the benchmarks (``python -m devtools.zammad_simulator``);
- :mod:`devtools.webhook`: a webhook request built byte for byte as Zammad sends it;
- :mod:`devtools.demo`: ``make demo`` (``python -m devtools.demo``), one real archive run.

Run them from the repository root (``python -m devtools.…``); the package is not installed
(``[tool.setuptools.packages.find]`` takes ``app*`` only, and the ``Containerfile`` copies
``app/`` only).
"""
