"""Now `metaplastic export WORKDIR OUT_DIR [--step N] [--force]`; this script passes its arguments on."""
import sys; from metaplastic.cli import main  # noqa: E702
sys.exit(main(["export", *sys.argv[1:]]))
