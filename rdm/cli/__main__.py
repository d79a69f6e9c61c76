"""`python -m rdm.cli`: the `rdm` command without its script (how the dashboard starts the job worker)."""

from rdm.cli import main

main()
