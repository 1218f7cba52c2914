"""`python -m generator`: the event generator as its own process."""

from generator.cli import main

raise SystemExit(main())
