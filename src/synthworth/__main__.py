import sys

from synthworth.cli import main

sys.exit(main())
