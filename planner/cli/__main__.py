"""`python -m planner.cli` runs the moeplan command line."""

from planner.cli import main

main()
