"""``.. fakegpt-help:: [COMMAND]``: the command line's ``--help`` text, taken
from the parser at build time, so the documentation never drifts from it."""
import os

from docutils import nodes
from docutils.parsers.rst import Directive


class FakegptHelp(Directive):
    optional_arguments = 1

    def run(self):
        from fakegpt import cli

        previous = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "88"  # argparse wraps to the terminal: fix the width
        try:
            parser, commands = cli._parser()
            command = self.arguments[0] if self.arguments else None
            text = (commands[command] if command else parser).format_help()
        finally:
            if previous is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = previous
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("fakegpt-help", FakegptHelp)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
