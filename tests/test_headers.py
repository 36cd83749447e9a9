"""The C++ headers a user of the CMake target sees: csrc/ is its public include directory, so no
header there may take the name of a standard one (`#include <math.h>` would find ours)."""
import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[1] / "csrc"

# The C standard library's headers (C17), which C++ code reaches as <name.h> too.
C_HEADERS = {
    "assert.h", "complex.h", "ctype.h", "errno.h", "fenv.h", "float.h", "inttypes.h", "iso646.h",
    "limits.h", "locale.h", "math.h", "setjmp.h", "signal.h", "stdalign.h", "stdarg.h",
    "stdatomic.h", "stdbool.h", "stddef.h", "stdint.h", "stdio.h", "stdlib.h", "stdnoreturn.h",
    "string.h", "tgmath.h", "threads.h", "time.h", "uchar.h", "wchar.h", "wctype.h",
}


def test_no_public_header_shadows_a_standard_one():
    ours = {p.name for p in CSRC.iterdir() if p.is_file()}
    assert not ours & C_HEADERS, f"csrc/ (a public include directory) shadows {sorted(ours & C_HEADERS)}"


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_system_math_h_reachable_through_the_public_include_dir(tmp_path):
    src = tmp_path / "user.cpp"
    src.write_text("#include <math.h>\ndouble root(double x) { return sqrt(x); }\n")
    r = subprocess.run(["c++", "-fsyntax-only", f"-I{CSRC}", str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
