"""The registers study: measure the high-norm tokens of "Vision Transformers Need Registers".

Data flows one way: ``images`` → ``models`` + ``hooks`` (one pass, every token) → ``metrics`` →
``features`` (tidy parquet cache) → ``findings`` (tables) → ``claims`` (verdicts) → ``plots``
and ``report`` → ``pages`` (one function per book page) → ``run`` (papermill, Jupyter Book).
"""

__version__ = "0.1.0"
