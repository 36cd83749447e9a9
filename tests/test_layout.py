"""The source tree as the README describes it: its layout section names every file under csrc/ and
lenet_fast/ and nothing that is not there, and the kernel layer includes no torch."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LISTED_TREES = ("csrc", "lenet_fast")
TORCH_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](torch/|ATen/|c10/|caffe2/|Python\.h)', re.M)


def layout_entries():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 1)[1].split("```", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line and not line.startswith(" ")]


def source_files(tree):
    skip = {"__pycache__"}
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / tree).rglob("*")
                  if p.is_file() and not skip & set(p.parts) and p.suffix not in (".so", ".pyc"))


def test_layout_lists_every_source_file():
    listed = set(layout_entries())
    missing = [f for tree in LISTED_TREES for f in source_files(tree) if f not in listed]
    assert not missing, f"README's layout section does not list {missing}"


def test_layout_lists_only_what_exists():
    gone = [e for e in layout_entries() if not (ROOT / e).exists()]
    assert not gone, f"README's layout section lists {gone}, which do not exist"


def test_kernels_include_no_torch():
    """csrc/kernels/ is what nvcc, the CPU harness and plain C++ programs compile: torch-free."""
    files = [p for p in (ROOT / "csrc" / "kernels").rglob("*") if p.suffix in (".h", ".cpp", ".cu")]
    assert files
    offenders = [str(p.relative_to(ROOT)) for p in files if TORCH_INCLUDE.search(p.read_text())]
    assert not offenders, f"torch headers included in the kernel layer: {offenders}"
