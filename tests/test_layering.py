"""The core stays light: importing jaxprune pulls in no Flax, Orbax, TFDS or Grain."""

import subprocess
import sys


def test_the_core_imports_no_engine_dependencies():
    code = (
        "import sys, jaxprune, jaxprune.lottery, jaxprune.transforms\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules}"
        " & {'flax', 'orbax', 'tensorflow_datasets', 'grain', 'tensorflow'})\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the core imported {out.stdout.strip()}"
