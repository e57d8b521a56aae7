import sys
from pathlib import Path

# the migration world (seeding, independent views of both systems) is shared
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "migration"))
