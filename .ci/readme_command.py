"""Print one of README.rst's console commands, as written: ``demo``, ``test`` or ``docs``.

The README shows three console blocks, in this order: install and run the
demo, install the test dependencies and run the tests, build the docs.
"""
import pathlib
import re
import sys

NAMES = ("demo", "test", "docs")

readme = (pathlib.Path(__file__).resolve().parent.parent / "README.rst").read_text()
blocks = [block.strip() for block in re.findall(r"^\.\. code-block:: console\n\n((?:    .*\n|\n)+)", readme, re.M)]
if len(blocks) != len(NAMES) or len(sys.argv) != 2 or sys.argv[1] not in NAMES:
    sys.exit(f"usage: readme_command.py {{{','.join(NAMES)}}} (README.rst has {len(blocks)} console blocks)")
print(blocks[NAMES.index(sys.argv[1])])
