"""``python -m steward_otp.cli``: the ``steward-otp`` command, as the console script."""

from steward_otp.cli.program import main

main()
