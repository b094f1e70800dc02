"""Reference solutions to chapter 2's exercises: registration and a welcome e-mail."""
