"""Where the project's bundled data lives (the repository's traces/ folder)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TRACES_DIR = REPO_ROOT / "traces"
PROFILES_DIR = TRACES_DIR / "profiles"
GPU_DEFAULTS_FILE = PROFILES_DIR / "gpu-defaults.toml"
SPECS_DIR = TRACES_DIR / "specs"
