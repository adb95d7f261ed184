import sys

try:
    from hwnas.cli import entry
except KeyboardInterrupt:  # Ctrl-C while the libraries load: nothing started, nothing to keep
    print("interrupted before anything started", file=sys.stderr)
    sys.exit(130)

entry()
