"""What ``comfy node publish`` uploads, and ComfyUI Manager installs from the registry: git-tracked files minus
``.comfyignore`` plus ``[tool.comfy] includes``, as comfy-cli packs them. That is the node pack, not the lab."""
import shutil
import subprocess
import sys
import tomllib

import pytest

from host_path import PACK_ROOT

NODE_PACK_FOLDERS = {"nodes", "fis_core", "web", "workflows", "subgraphs"}
PROJECT_FILES = {"__init__.py", "README.md", "pyproject.toml", "requirements.txt"}
LOAD_CHECK = """
import importlib.util, sys
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("published_pack", sys.argv[2] + "/__init__.py")
pack = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = pack
spec.loader.exec_module(pack)
print(sorted(pack.NODE_CLASS_MAPPINGS))
"""

def git_files(*options: str) -> set[str]:
    result = subprocess.run(["git", "-C", str(PACK_ROOT), "ls-files", *options], capture_output=True, text=True)
    if shutil.which("git") is None or result.returncode != 0:
        pytest.skip(f"not a git checkout, so no published file set: {result.stderr.strip()}")
    return set(result.stdout.splitlines())


def published() -> set[str]:
    """The files comfy-cli's ``zip_files`` puts into the archive (its .comfyignore patterns are git's own)."""
    ignored = git_files("--cached", "--ignored", f"--exclude-from={PACK_ROOT / '.comfyignore'}")
    includes = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text())["tool"]["comfy"].get("includes", [])
    included = {str(p.relative_to(PACK_ROOT)) for include in includes for p in (PACK_ROOT / include).rglob("*") if p.is_file()}
    return git_files() - ignored | included


def test_the_published_files_are_the_node_pack():
    files = published()
    assert {f.split("/")[0] for f in files if "/" in f} == NODE_PACK_FOLDERS
    assert {f for f in files if "/" not in f} == PROJECT_FILES
    assert {f for f in git_files() if f.split("/")[0] in NODE_PACK_FOLDERS} <= files
    assert "quality/train.py" not in files and not any(f.startswith(("bench/", "tests/", "scripts/")) for f in files)


def test_the_published_files_are_a_working_pack(host, tmp_path):
    """The archive alone, imported as ComfyUI's loader imports a pack (in a fresh process), gives all its nodes."""
    pack = tmp_path / "custom_nodes" / "frame-interleaved-sparsity"
    for name in published():
        (pack / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACK_ROOT / name, pack / name)
    result = subprocess.run([sys.executable, "-c", LOAD_CHECK, str(host), str(pack)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("['FISCalibrate', 'FISCompare', 'FISTimer', 'FPSAttention', 'FPSAttentionRaylight', 'FrameInterleavedSparsity', "
            "'FrameInterleavedSparsityRaylight']") in result.stdout
