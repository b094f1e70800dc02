"""What the notebooks use: a real server, a timeline, SMTP, databases, queues, quizzes, checks' feedback.

The notebooks import these through the package's public API (``bgcourse.<name>``), never from here.
"""
