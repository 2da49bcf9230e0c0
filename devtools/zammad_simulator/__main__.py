"""``python -m devtools.zammad_simulator``: see :mod:`devtools.zammad_simulator.cli`."""

from devtools.zammad_simulator.cli import main

raise SystemExit(main())
