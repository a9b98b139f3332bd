"""Stops a plain ``jupyter-book build .`` at the repository root with one line that says what to run.

The book's notebooks are executed by papermill with their parameters (``make book``) into
``_build/src``, and Jupyter Book builds that staged copy, whose configuration leaves this
extension out. Built from the root, the notebooks would have no outputs and every glued number
would be missing, so the build stops at once instead of producing empty pages.
"""

from sphinx.errors import ConfigError

MESSAGE = ("this book is built with `make book` (it runs each notebook with its parameters, then "
           "Jupyter Book on _build/src); `jupyter-book build .` at the root would give pages without numbers")


def refuse(_app, _config) -> None:
    raise ConfigError(MESSAGE)


def setup(app):
    app.connect("config-inited", refuse)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
