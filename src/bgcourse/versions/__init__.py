"""The version matrix: the course's version-dependent facts, measured on real stacks (``make versions``)."""
