"""`python -m bench [--quick] [--tiny] [--only NAME ...]`: run the benchmarks."""

from bench.cli import main

raise SystemExit(main())
