"""The ``benchmark-results`` directive: show ``docs/benchmarks.md`` inside an rst page.

The benchmark harness writes its results as Markdown. With ``myst-parser``
installed the file is rendered (tables, headings); without it the Markdown is
shown as a literal block, which keeps pipe tables readable. Before the harness
has run, the page says how to produce the file instead of failing the build.
"""

from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList
from sphinx.directives.other import Include


class BenchmarkResults(Directive):
    """``.. benchmark-results:: benchmarks.md`` (path relative to the current document)."""

    required_arguments = 1
    option_spec = {"missing": directives.unchanged}

    def run(self):
        env = self.state.document.settings.env
        rel, path = env.relfn2path(self.arguments[0], env.docname)
        path = Path(path)
        # Noted even while missing: Sphinx re-reads a page whose dependency is absent.
        env.note_dependency(rel)
        if not path.is_file():
            text = self.options.get(
                "missing", f"``{rel}`` has not been generated yet; run the benchmark harness.")
            holder = nodes.Element()
            self.state.nested_parse(StringList(text.splitlines(), rel), self.content_offset,
                                    holder)
            return holder.children
        if "myst_parser" in env.app.extensions:
            # Sphinx's own include, with the Markdown parser; a leading "/" resolves the
            # path from the source root.
            include = Include(
                "include", [f"/{rel}"],
                {"parser": directives.parser_name("myst_parser.sphinx_")}, StringList(),
                self.lineno, self.content_offset, self.block_text, self.state,
                self.state_machine)
            return include.run()
        text = path.read_text(encoding="utf-8")
        block = nodes.literal_block(text, text, language="markdown")
        return [block]


def setup(app):
    app.add_directive("benchmark-results", BenchmarkResults)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
