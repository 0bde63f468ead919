import gc
import sys

from pipeline.cli import main

status = main()
# The interpreter's teardown would walk every object Beam and the run created (about a second after a
# conversion, measured); the operating system frees them at exit anyway. Files are closed, atexit runs.
gc.freeze()
sys.exit(status)
