import sys
from pathlib import Path

# The shared helpers (loopline_process) live one directory up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
