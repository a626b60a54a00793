"""``.. fakegpt-help:: [COMMAND]``: the command line's ``--help`` text, taken
from the parser at build time, so the documentation never drifts from it."""
import os

from docutils import nodes
from docutils.parsers.rst import Directive


class FakegptHelp(Directive):
    optional_arguments = 1

    def run(self):
        from fakegpt import cli

        # argparse wraps to the terminal's width, and may colour its output (3.14+): fix both.
        fixed = {"COLUMNS": "88", "NO_COLOR": "1", "PYTHON_COLORS": "0"}
        previous = {name: os.environ.get(name) for name in fixed}
        os.environ.update(fixed)
        try:
            parser, commands = cli._parser()
            command = self.arguments[0] if self.arguments else None
            text = (commands[command] if command else parser).format_help()
        finally:
            for name, value in previous.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value
        for source in sorted(os.listdir(os.path.dirname(cli.__file__))):  # rebuild when the CLI changes
            if source.endswith(".py"):
                self.state.document.settings.record_dependencies.add(os.path.join(os.path.dirname(cli.__file__), source))
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("fakegpt-help", FakegptHelp)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
