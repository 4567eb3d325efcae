"""``python -m reports build results/bench --out reports/out``."""

from reports.cli import main

raise SystemExit(main())
