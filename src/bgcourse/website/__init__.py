"""The course as a website (``make site``, ``bgcourse site``): every chapter executed once, both editions built.

What a page shows of each cell is decided here (``fold_of``, ``page_notebook``), from the cells'
nbgrader metadata. The build itself (``_build``, ``_execute``, ``_sphinx``) needs the site's
packages (Sphinx, MyST-NB, the book theme, jupyter-cache), which only ``.venv-site`` installs
(``make site-env``), so this package's public part imports none of them.
"""

from __future__ import annotations

from bgcourse.website._cells import FOLDED, RUN_NOTE, Fold, fold_of, page_notebook, run_note

__all__ = ["FOLDED", "Fold", "RUN_NOTE", "fold_of", "page_notebook", "run_note"]
