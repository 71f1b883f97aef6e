"""Tests mirror the packages; ``helpers`` (reference computations, tiny models) is importable from every folder."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
