"""Reference solutions to chapter 5's exercises: performance, limits and timeouts."""
