"""``python -m sparsecheck``."""

from sparsecheck.cli import main

raise SystemExit(main())
