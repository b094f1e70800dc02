"""``make lab``: the learner's own copy of the course (``my-course/``), and JupyterLab on it."""
