import sys

from spatia.cli.main import main

sys.exit(main())
