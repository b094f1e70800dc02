"""The instructor's toolkit: release the learners' copies, grade submissions, write the gradebook.

One way through it: a submission (``_submissions``) -> its plan of cells (``_plan``) -> the sandboxed
run (``_sandbox``, ``_guard``, ``_kernel_client``) -> scores (``_scoring``) -> the gradebook
(``_gradebook``); ``_grade`` drives it for a whole assignment. ``_release`` writes the copies.
"""
