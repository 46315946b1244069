import sys

from benchmarks import run

sys.exit(run(sys.argv[1:]))
