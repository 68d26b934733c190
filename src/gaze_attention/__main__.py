import sys

from gaze_attention.cli import main

sys.exit(main())
