"""``python -m steward_otp`` runs the command-line interface."""

from steward_otp.cli import main

main()
