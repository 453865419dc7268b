import sys

from agentlog.cli import main

sys.exit(main())
