"""``python -m steward_otp.faultproxy``: run the fault proxy from the command line."""

import sys

from steward_otp.faultproxy.command_line import main

sys.exit(main())
