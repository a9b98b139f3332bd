"""The registers study: measure the high-norm tokens of "Vision Transformers Need Registers".

Data flows one way: ``images`` → ``models`` + ``hooks`` (one pass, every token) → ``metrics`` →
``features`` (tidy parquet cache) → ``findings`` (tables, intervals from ``stats``) → ``claims``
(verdicts) → ``plots`` and ``report`` (a page's saved tables and glue). The book's notebooks compose
these building blocks in visible cells; ``run`` executes them (papermill) and builds the site.
"""

__version__ = "0.1.0"

import warnings as _warnings

# timm and huggingface_hub import tqdm.auto, which warns in kernels without ipywidgets; the study
# itself uses plain tqdm (silent when not on a terminal), so the warning only clutters the pages.
_warnings.filterwarnings("ignore", message="IProgress not found")
